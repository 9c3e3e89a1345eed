//! The access-log writers (ELB-SPEC §11): one per destination, shared by every load balancer logging there, kept
//! across reloads (a reload that names a new destination starts its writer; one no longer named keeps running
//! idle until shutdown flushes it).

use std::collections::HashMap;

use crate::config::{AccessLogDestination, Config};
use crate::observability::access_log::{AccessLog, Destination, WriterHandle};
use crate::server::StartError;

/// Entries an access log may hold in memory before new ones are dropped (and counted): a slow disk never slows
/// requests.
const ACCESS_LOG_QUEUE: usize = 65_536;

/// Every writer started so far, by destination.
#[derive(Default)]
pub(super) struct AccessLogs {
    writers: Vec<(AccessLogDestination, AccessLog, Option<WriterHandle>)>,
}

/// Writers a configuration needs that are not running yet (started, not yet kept: a refused reload drops them).
pub(super) struct StagedLogs {
    started: Vec<(AccessLogDestination, AccessLog, Option<WriterHandle>)>,
    /// Each logging load balancer's writer.
    pub(super) by_load_balancer: HashMap<String, AccessLog>,
}

impl AccessLogs {
    /// Finds or starts the writer of every load balancer's destination in `config`.
    pub(super) fn stage(&self, config: &Config) -> Result<StagedLogs, StartError> {
        let mut staged = StagedLogs {
            started: Vec::new(),
            by_load_balancer: HashMap::new(),
        };
        for lb in &config.load_balancers {
            let Some(destination) = &lb.access_log else {
                continue;
            };
            let known = self.writers.iter().chain(&staged.started);
            let log = match known.clone().find(|(d, _, _)| d == destination) {
                Some((_, log, _)) => log.clone(),
                None => {
                    let target = match destination {
                        AccessLogDestination::Stdout => Destination::Stdout,
                        AccessLogDestination::File(path) => Destination::File(path.clone()),
                    };
                    let (log, writer) =
                        AccessLog::start(target, ACCESS_LOG_QUEUE).map_err(|source| {
                            StartError::AccessLog {
                                load_balancer: lb.name.clone(),
                                source,
                            }
                        })?;
                    staged
                        .started
                        .push((destination.clone(), log.clone(), Some(writer)));
                    log
                }
            };
            staged.by_load_balancer.insert(lb.name.clone(), log);
        }
        Ok(staged)
    }

    /// Keeps the writers `staged` started.
    pub(super) fn commit(&mut self, staged: StagedLogs) {
        self.writers.extend(staged.started);
    }

    /// Every writer (for the admin listener's dropped-line counts).
    pub(super) fn logs(&self) -> Vec<AccessLog> {
        self.writers.iter().map(|(_, log, _)| log.clone()).collect()
    }

    /// Asks every file writer to reopen its file (logrotate sends SIGHUP after moving them).
    pub(super) fn reopen(&self) {
        for (_, log, _) in &self.writers {
            log.reopen();
        }
    }

    /// The writers' handles, for shutdown to flush them (taken once).
    pub(super) fn take_handles(&mut self) -> Vec<WriterHandle> {
        self.writers
            .iter_mut()
            .filter_map(|(_, _, writer)| writer.take())
            .collect()
    }
}
