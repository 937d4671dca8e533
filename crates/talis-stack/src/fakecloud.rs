//! Starting `fakecloud` as a supervised process (see `process`).
