//! hub (to be written)
