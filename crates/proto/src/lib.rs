//! Rust bindings for the gRPC contracts in `proto/`: `mittari.v1` (metrics, in
//! `mittari/v1/metrics.proto`) and `mittari.admin.v1` (run-time administration, in
//! `mittari/admin/v1/admin.proto`).
//!
//! The contract is the product's public API: clients in any language generate their own
//! bindings from the same file, or discover it at run time through server reflection, for
//! which [`FILE_DESCRIPTOR_SET`] is served.

pub mod bounded;

/// Messages and the `MetricService` client and server of package `mittari.v1`.
pub mod v1 {
    #![allow(missing_docs, unreachable_pub, missing_debug_implementations)]
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("mittari.v1");
}

/// Messages and the `AdminService` client and server of package `mittari.admin.v1`.
pub mod admin {
    pub mod v1 {
        #![allow(missing_docs, unreachable_pub, missing_debug_implementations)]
        #![allow(clippy::all, clippy::pedantic)]
        tonic::include_proto!("mittari.admin.v1");
    }
}

/// The encoded `FileDescriptorSet` of the contracts, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/mittari_descriptor.bin"));
