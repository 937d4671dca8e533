//! The Talis RPC API as a Spin HTTP component.
