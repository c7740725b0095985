//! File types: what `lume quantize IN OUT TYPE` accepts for TYPE.
//!
//! A file type names a mix, not one tensor type: `Q4_K_M` means "Q4_K, with attn_v and some
//! ffn_down layers in Q6_K, the output in Q6_K" (the rules are in [`crate::rules`]). Each has
//! the number llama.cpp writes as `general.file_type` (its `llama_ftype`) and a default tensor
//! type, the one a tensor gets when no rule says otherwise. Names and numbers are llama.cpp's
//! (llama.h, tools/quantize), so files and commands carry over unchanged.

use gguf::GgmlType;

/// One `general.file_type` value lume can write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum FileType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q2_K_S,
    Q3_K_S,
    Q3_K_M,
    Q3_K_L,
    Q4_K_S,
    Q4_K_M,
    Q5_K_S,
    Q5_K_M,
    Q6_K,
    IQ2_XXS,
    IQ2_XS,
    IQ2_S,
    IQ2_M,
    IQ3_XXS,
    IQ3_XS,
    IQ3_S,
    IQ3_M,
    IQ1_S,
    IQ1_M,
    IQ4_NL,
    IQ4_XS,
    TQ1_0,
    TQ2_0,
    MXFP4_MOE,
}

use FileType as F;

/// (file type, name, llama_ftype number, default tensor type), in llama-quantize's order.
const TABLE: &[(FileType, &str, u32, GgmlType)] = &[
    (F::Q4_0, "Q4_0", 2, GgmlType::Q4_0),
    (F::Q4_1, "Q4_1", 3, GgmlType::Q4_1),
    (F::MXFP4_MOE, "MXFP4_MOE", 38, GgmlType::MXFP4),
    (F::Q5_0, "Q5_0", 8, GgmlType::Q5_0),
    (F::Q5_1, "Q5_1", 9, GgmlType::Q5_1),
    (F::IQ2_XXS, "IQ2_XXS", 19, GgmlType::IQ2_XXS),
    (F::IQ2_XS, "IQ2_XS", 20, GgmlType::IQ2_XS),
    (F::IQ2_S, "IQ2_S", 28, GgmlType::IQ2_XS),
    (F::IQ2_M, "IQ2_M", 29, GgmlType::IQ2_S),
    (F::IQ1_S, "IQ1_S", 24, GgmlType::IQ1_S),
    (F::IQ1_M, "IQ1_M", 31, GgmlType::IQ1_M),
    (F::TQ1_0, "TQ1_0", 36, GgmlType::TQ1_0),
    (F::TQ2_0, "TQ2_0", 37, GgmlType::TQ2_0),
    (F::Q2_K, "Q2_K", 10, GgmlType::Q2_K),
    (F::Q2_K_S, "Q2_K_S", 21, GgmlType::Q2_K),
    (F::IQ3_XXS, "IQ3_XXS", 23, GgmlType::IQ3_XXS),
    (F::IQ3_S, "IQ3_S", 26, GgmlType::IQ3_S),
    (F::IQ3_M, "IQ3_M", 27, GgmlType::IQ3_S),
    (F::IQ3_XS, "IQ3_XS", 22, GgmlType::IQ3_S),
    (F::Q3_K_S, "Q3_K_S", 11, GgmlType::Q3_K),
    (F::Q3_K_M, "Q3_K_M", 12, GgmlType::Q3_K),
    (F::Q3_K_L, "Q3_K_L", 13, GgmlType::Q3_K),
    (F::IQ4_NL, "IQ4_NL", 25, GgmlType::IQ4_NL),
    (F::IQ4_XS, "IQ4_XS", 30, GgmlType::IQ4_XS),
    (F::Q4_K_S, "Q4_K_S", 14, GgmlType::Q4_K),
    (F::Q4_K_M, "Q4_K_M", 15, GgmlType::Q4_K),
    (F::Q5_K_S, "Q5_K_S", 16, GgmlType::Q5_K),
    (F::Q5_K_M, "Q5_K_M", 17, GgmlType::Q5_K),
    (F::Q6_K, "Q6_K", 18, GgmlType::Q6_K),
    (F::Q8_0, "Q8_0", 7, GgmlType::Q8_0),
    (F::F16, "F16", 1, GgmlType::F16),
    (F::BF16, "BF16", 32, GgmlType::BF16),
    (F::F32, "F32", 0, GgmlType::F32),
];

/// Short names llama-quantize also takes.
const ALIASES: &[(&str, FileType)] = &[
    ("Q3_K", F::Q3_K_M),
    ("Q4_K", F::Q4_K_M),
    ("Q5_K", F::Q5_K_M),
];

impl FileType {
    fn row(self) -> &'static (FileType, &'static str, u32, GgmlType) {
        TABLE
            .iter()
            .find(|r| r.0 == self)
            .expect("every FileType has a row in TABLE")
    }

    /// The name, as llama-quantize spells it.
    pub fn name(self) -> &'static str {
        self.row().1
    }

    /// The `general.file_type` number (llama.cpp's `llama_ftype`).
    pub fn id(self) -> u32 {
        self.row().2
    }

    /// The tensor type a quantizable tensor gets unless a rule says otherwise.
    pub fn default_type(self) -> GgmlType {
        self.row().3
    }

    /// Every file type, in llama-quantize's order.
    pub fn all() -> impl Iterator<Item = FileType> {
        TABLE.iter().map(|r| r.0)
    }

    /// Parses a name (case-insensitive), aliases included.
    pub fn from_name(name: &str) -> Option<FileType> {
        let up = name.to_ascii_uppercase();
        TABLE
            .iter()
            .find(|r| r.1 == up)
            .map(|r| r.0)
            .or_else(|| ALIASES.iter().find(|a| a.0 == up).map(|a| a.1))
    }

    /// The file type numbered `id`, if lume knows it.
    pub fn from_id(id: u32) -> Option<FileType> {
        TABLE.iter().find(|r| r.2 == id).map(|r| r.0)
    }
}

impl std::fmt::Display for FileType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_are_unique_and_round_trip() {
        for ft in FileType::all() {
            assert_eq!(FileType::from_name(ft.name()), Some(ft));
            assert_eq!(FileType::from_id(ft.id()), Some(ft), "{ft}");
        }
        assert_eq!(FileType::from_name("q4_k"), Some(FileType::Q4_K_M));
        assert_eq!(FileType::from_name("Q7_K"), None);
        assert_eq!(FileType::all().count(), TABLE.len());
    }
}
