//! Secrets every process of a cluster must share (issue 16: the cluster acts as one ELB): the key that
//! authenticates AWSELB cookies (ELB-SPEC §6), so a cookie one process issued is honoured by every other, as a
//! client moves between ELB's nodes.
//!
//! Rule: a secret is one etcd key, `{prefix}/secrets/{name}` (outside the record folders, so the store's reads
//! skip it), written once: the first process to offer one writes it (compare `version == 0`), and every later
//! one reads it back in the same transaction. Its value is the bytes as hex, as the key file in `state_dir` is.
//!
//! Trade-off: a secret is never rotated here; an etcd rebuilt from nothing loses it, and the next process to
//! start offers its own (processes already running keep theirs until restarted).

use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};

use super::{EtcdStore, StoreError};

impl EtcdStore {
    /// The cluster's secret `name`: the one already in etcd, or `ours` once written as the first.
    pub(crate) async fn shared_secret(
        &self,
        name: &str,
        ours: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let key = format!("{}secrets/{name}", self.prefix);
        let txn = Txn::new()
            .when([Compare::version(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), hex(ours), None)])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let mut kv = self.client.kv_client();
        let response = self.bounded("share a secret", kv.txn(txn)).await?;
        if response.succeeded() {
            return Ok(ours.to_vec());
        }
        let held = response.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.value().to_vec()),
            _ => None,
        });
        held.as_deref()
            .and_then(unhex)
            .ok_or_else(|| StoreError::Corrupt {
                path: format!("etcd {}", self.endpoints).into(),
                key,
                source: serde::de::Error::custom("not a secret (hex digits)"),
            })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &[u8]) -> Option<Vec<u8>> {
    if text.is_empty() || !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_what_is_not_hex() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(unhex(hex(&bytes).as_bytes()), Some(bytes.to_vec()));
        assert_eq!(unhex(b"abc"), None);
        assert_eq!(unhex(b"zz"), None);
        assert_eq!(unhex(b""), None);
    }
}
