//! What a listener's requests share, and what the proxy knows of the client connection they came on.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::header::HeaderValue;

use crate::data_plane::back_end::http1::InstanceTls;
use crate::data_plane::body::ConnectionState;
use crate::data_plane::headers::ForwardedProto;
use crate::data_plane::passive::PassiveReporter;
use crate::data_plane::routing::surge::SurgeQueue;
use crate::data_plane::snapshot::SharedNodeSnapshot;
use crate::data_plane::tls::Negotiated;
use crate::http1::io::TimerSlot;
use crate::observability::access_log::AccessLog;
use crate::observability::metrics::ZoneMetrics;

/// Everything a listener's requests share, built once when the listener starts.
pub(crate) struct ListenerContext {
    /// What this node may route to (swapped by the control plane).
    pub routes: SharedNodeSnapshot,
    /// `X-Forwarded-Proto`: `http` or `https`.
    pub proto: ForwardedProto,
    /// `X-Forwarded-Port`: the listener's port.
    pub port: HeaderValue,
    /// `Host` for HTTP/1.0 requests without one: the node's address (ELB-SPEC.md §1.1).
    pub node_host: HeaderValue,
    pub max_uri_bytes: usize,
    pub metrics: Arc<ZoneMetrics>,
    /// Where connection failures are reported, when passive health checks are on (elbe's extension).
    pub passive: Option<PassiveReporter>,
    /// The load balancer's access log, when enabled.
    pub access_log: Option<ListenerLog>,
    /// The node's surge queue (used only when instances have a request limit).
    pub surge: SurgeQueue,
    /// `instance_protocol = "HTTPS"`: the TLS client instances are spoken to with (the instance port's
    /// `backend_ca` one, or the unverified one); `None`: plain HTTP.
    pub instance_tls: InstanceTls,
}

/// A listener's access log and the facts every line of it shares.
pub(crate) struct ListenerLog {
    pub log: AccessLog,
    pub load_balancer: Arc<str>,
    /// `http` or `https`.
    pub scheme: &'static str,
    pub port: u16,
}

/// What elbe knows of one client connection's client: its address (the access log, X-Forwarded-For, rules'
/// `source_ip`) and what its TLS handshake negotiated. Every connection's stack carries it, idle or not, so it is
/// compact: 28 bytes, where a `SocketAddr` and the two TLS names took 64.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientFacts {
    ip: IpAddr,
    port: u16,
    /// What an HTTPS listener's handshake negotiated.
    pub tls: Option<Negotiated>,
}

impl ClientFacts {
    pub(crate) fn new(peer: SocketAddr, tls: Option<Negotiated>) -> Self {
        ClientFacts {
            ip: peer.ip(),
            port: peer.port(),
            tls,
        }
    }

    /// The client's address and port.
    pub(crate) fn peer(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }

    /// The client's address (X-Forwarded-For, rules' `source_ip`).
    pub(crate) fn ip(&self) -> IpAddr {
        self.ip
    }
}

/// What a connection's stack knows of its connection, kept once, by the innermost service
/// ([`Forward`](super::forward::Forward)); the layers around it read it from there ([`Facts`]). Every connection
/// carries its stack, idle or not, and with each layer keeping its own copy of the context and of the client's
/// address (one of them as X-Forwarded-For text) the stack took 144 bytes of every connection; 56 now
/// (BENCHMARKS.md "Idle connections").
#[derive(Clone)]
pub(crate) struct ConnectionFacts {
    pub context: Arc<ListenerContext>,
    pub client: ClientFacts,
    /// The connection's request timer between requests ([`super::forward`]'s `RequestTimer`); an HTTP/1
    /// connection lends its own sleep to it ([`crate::http1::io::LazyTimer::lend`]).
    pub timers: TimerSlot,
}

/// A service of the stack that can tell what it knows of its connection: the innermost keeps it, each layer asks
/// the service inside it, and so does the HTTP/1 server that holds the stack (its metrics, its timer slot).
pub(crate) trait Facts {
    fn facts(&self) -> &ConnectionFacts;
}

/// The server a client connection is on, which decides what the stack tells it and how it hands responses over.
#[derive(Debug, Clone)]
pub(crate) enum ClientProtocol {
    /// elbe's HTTP/1 server ([`crate::data_plane::front_end::http1`]): it knows when a request is over itself, and writes an
    /// instance's response head as received ([`crate::data_plane::back_end::http1::RawHead`]).
    Http1,
    /// elbe's HTTP/2 server: the connection's idle timer counts requests in flight through this state (its
    /// streams end on the connection's task, a WebSocket's on the tunnel's).
    Http2(Arc<ConnectionState>),
}

/// Stand-ins the layers' tests share.
#[cfg(test)]
pub(crate) mod test_support {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::time::Duration;

    use arc_swap::ArcSwap;
    use http::header::HeaderValue;
    use http::{Request, Response};
    use tower::Service;

    use super::{ClientFacts, ConnectionFacts, Facts, ListenerContext};
    use crate::data_plane::headers::ForwardedProto;
    use crate::data_plane::proxy::response_body::ResponseBody;
    use crate::data_plane::routing::surge::SurgeQueue;
    use crate::observability::metrics::{Metrics, ZoneMetrics};

    pub(crate) fn context(metrics: &Metrics) -> Arc<ListenerContext> {
        context_counting_in(Arc::new(metrics.zone("web", "zone-a")))
    }

    /// A listener's context whose requests and connections are counted in `metrics`.
    pub(crate) fn context_counting_in(metrics: Arc<ZoneMetrics>) -> Arc<ListenerContext> {
        Arc::new(ListenerContext {
            routes: Arc::new(ArcSwap::from_pointee(
                crate::data_plane::snapshot::NodeSnapshot {
                    candidates: Vec::new(),
                    idle_timeout: Duration::from_secs(60),
                    ..Default::default()
                },
            )),
            proto: ForwardedProto::https(),
            port: HeaderValue::from_static("443"),
            node_host: HeaderValue::from_static("127.0.0.11"),
            max_uri_bytes: 64,
            metrics,
            passive: None,
            access_log: None,
            surge: SurgeQueue::new(0, 1024),
            instance_tls: None,
        })
    }

    /// A client at 127.0.0.1:1 on `context`'s listener, with a timer slot of its own.
    pub(crate) fn facts(context: Arc<ListenerContext>) -> ConnectionFacts {
        ConnectionFacts {
            context,
            client: ClientFacts::new("127.0.0.1:1".parse().expect("an address"), None),
            timers: crate::http1::io::timer_slot(),
        }
    }

    /// A stand-in for what a layer wraps: `service` answers, and it says it serves the connection of `facts`.
    #[derive(Clone)]
    pub(crate) struct Inner<S> {
        pub facts: ConnectionFacts,
        pub service: S,
    }

    /// [`Inner`] for a client at 127.0.0.1:1 on `context`'s listener.
    pub(crate) fn inner<S>(context: Arc<ListenerContext>, service: S) -> Inner<S> {
        Inner {
            facts: facts(context),
            service,
        }
    }

    impl<S: Service<R>, R> Service<R> for Inner<S> {
        type Response = S::Response;
        type Error = S::Error;
        type Future = S::Future;

        fn poll_ready(
            &mut self,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), S::Error>> {
            self.service.poll_ready(cx)
        }

        fn call(&mut self, request: R) -> S::Future {
            self.service.call(request)
        }
    }

    impl<S> Facts for Inner<S> {
        fn facts(&self) -> &ConnectionFacts {
            &self.facts
        }
    }

    /// An instance stand-in that answers 200 with the request's headers copied into the response.
    pub(crate) fn mirror() -> impl Service<
        Request<()>,
        Response = Response<ResponseBody>,
        Error = Infallible,
        Future = std::future::Ready<Result<Response<ResponseBody>, Infallible>>,
    > + Clone {
        tower::service_fn(|request: Request<()>| {
            let mut response = Response::new(ResponseBody::empty());
            *response.headers_mut() = request.headers().clone();
            if let Ok(uri) = HeaderValue::from_str(&request.uri().to_string()) {
                response.headers_mut().insert("x-seen-uri", uri);
            }
            std::future::ready(Ok(response))
        })
    }
}
