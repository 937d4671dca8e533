//! Starting `host` as a supervised process (see `process`).
