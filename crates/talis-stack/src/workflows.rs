//! Starting `workflows` as a supervised process (see `process`).
