//! sampling (to be written)
