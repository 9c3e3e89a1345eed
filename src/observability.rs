//! What elbe tells operators: ELB's CloudWatch metrics as Prometheus series, and ELB's access-log lines.

pub(crate) mod access_log;
pub(crate) mod metrics;
