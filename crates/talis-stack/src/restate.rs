//! Starting `restate` as a supervised process (see `process`).
