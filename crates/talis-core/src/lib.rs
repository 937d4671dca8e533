//! Talis domain: models, enums, validation, status state machines, SQL access.
