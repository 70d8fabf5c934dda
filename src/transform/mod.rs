//! Transformations: the public library shipped in the binary. The sandboxed runtimes come
//! with the transformation issue.

pub mod library;
