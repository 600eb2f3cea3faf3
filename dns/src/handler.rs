//! The hickory-server request handler: checks a request (opcode, question count,
//! class, EDNS version), answers cluster names from the [`View`] through
//! [`answer`], and sends the rest upstream (or refuses them when there is no
//! upstream). TCP requests reach it through hickory's server; UDP requests through
//! `server`'s loop, which keeps encoded answers (see there).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};
use parking_lot::RwLock;

use crate::answer::{answer, Outcome, Zone};
use crate::forward::Forwarder;
use crate::metrics::{Metrics, Transport};
use crate::view::View;

/// Largest UDP payload we send, whatever the client advertises (larger answers are
/// truncated and retried over TCP; 4096 is what most resolvers advertise).
pub const MAX_UDP_PAYLOAD: u16 = 4096;

/// State shared by every listener.
pub struct Shared {
    /// The records.
    pub view: RwLock<View>,
    /// Bumped after every change to the view: encoded answers made before are stale.
    pub generation: AtomicU64,
    /// The zone's settings.
    pub zone: Zone,
    /// Where other names go; `None`: they are refused.
    pub forwarder: Option<Forwarder>,
    /// Counters.
    pub metrics: Metrics,
}

impl Shared {
    /// Shared state with an empty view.
    pub fn new(zone: Zone, forwarder: Option<Forwarder>, metrics: Metrics) -> Self {
        let mut view = View::new();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs());
        view.set_serial(u32::try_from(now).unwrap_or(u32::MAX));
        Shared {
            view: RwLock::new(view),
            generation: AtomicU64::new(0),
            zone,
            forwarder,
            metrics,
        }
    }

    /// Changes the view and invalidates encoded answers.
    pub fn update<R>(&self, f: impl FnOnce(&mut View) -> R) -> R {
        let r = f(&mut self.view.write());
        self.generation.fetch_add(1, Ordering::Release);
        r
    }
}

/// A response before encoding.
#[derive(Debug)]
pub struct Response {
    /// The header.
    pub metadata: Metadata,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section.
    pub authority: Vec<Record>,
    /// Additional section.
    pub additionals: Vec<Record>,
    /// The response's EDNS, when the request had one.
    pub edns: Option<Edns>,
    /// The question's type (for metrics; `ANY`'s slot is shared with unknown).
    pub qtype: RecordType,
    /// Whether the answer depends only on the request and the view (so the same
    /// request may get the same bytes until the view changes).
    pub cacheable: bool,
}

type Section<'a> = std::slice::Iter<'a, Record>;

impl Response {
    /// The response as hickory encodes it, answering `request`.
    pub fn message<'a>(
        &'a self,
        request: &'a Request,
    ) -> MessageResponse<'a, 'a, Section<'a>, Section<'a>, std::iter::Empty<&'a Record>, Section<'a>>
    {
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = &self.edns {
            builder.edns(e);
        }
        builder.build(
            self.metadata,
            self.answers.iter(),
            self.authority.iter(),
            std::iter::empty(),
            self.additionals.iter(),
        )
    }
}

/// The request handler; cheap to clone.
#[derive(Clone)]
pub struct Handler(pub Arc<Shared>);

impl Handler {
    /// Decides the response to a parsed request.
    pub async fn respond(&self, request: &Request) -> Response {
        match self.respond_now(request) {
            Ok(resp) => resp,
            Err(pending) => self.finish(pending).await,
        }
    }

    /// The response when it needs no upstream; otherwise what is left to do, for
    /// [`Handler::finish`].
    pub fn respond_now(&self, request: &Request) -> Result<Response, Box<Pending>> {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = self.0.forwarder.is_some();
        let edns = request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(req.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            e.set_version(0);
            e
        });
        let mut resp = Response {
            metadata,
            answers: Vec::new(),
            authority: Vec::new(),
            additionals: Vec::new(),
            edns,
            qtype: RecordType::Unknown(0),
            cacheable: true,
        };
        let fail = |mut resp: Response, code: ResponseCode| {
            resp.metadata.response_code = code;
            Ok(resp)
        };
        if request.metadata.op_code != OpCode::Query {
            return fail(resp, ResponseCode::NotImp);
        }
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            return fail(resp, ResponseCode::BADVERS);
        }
        let queries = request.queries.queries();
        let [query] = queries else {
            return fail(resp, ResponseCode::FormErr);
        };
        let qtype = query.query_type();
        resp.qtype = qtype;
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            // Zone transfers of the cluster zone are not offered.
            return fail(resp, ResponseCode::Refused);
        }
        let qclass = query.query_class();
        let name: &Name = query.name();
        let outcome = if qclass == DNSClass::IN {
            let view = self.0.view.read();
            answer(name, qtype, &view, &self.0.zone)
        } else {
            Outcome::Upstream
        };
        match outcome {
            Outcome::Local(a) => {
                resp.metadata.authoritative = true;
                resp.metadata.response_code = a.rcode;
                resp.answers = a.answers;
                resp.authority = a.authority;
                resp.additionals = a.additionals;
                match a.chase {
                    Some(target)
                        if matches!(qtype, RecordType::A | RecordType::AAAA | RecordType::ANY) =>
                    {
                        if self.0.zone.origin.zone_of(&target) {
                            let view = self.0.view.read();
                            let target = target.to_lowercase();
                            if let Outcome::Local(a) = answer(&target, qtype, &view, &self.0.zone) {
                                resp.answers.extend(a.answers);
                            }
                            Ok(resp)
                        } else if self.0.forwarder.is_some() {
                            resp.cacheable = false;
                            Err(Box::new(Pending::Chase(resp, target, qtype)))
                        } else {
                            Ok(resp)
                        }
                    }
                    _ => Ok(resp),
                }
            }
            Outcome::Upstream => {
                if self.0.forwarder.is_none() {
                    return fail(resp, ResponseCode::Refused);
                }
                resp.cacheable = false;
                Err(Box::new(Pending::Upstream(
                    resp,
                    name.clone(),
                    qtype,
                    qclass,
                )))
            }
        }
    }

    /// Does the upstream part of a response.
    pub async fn finish(&self, pending: Box<Pending>) -> Response {
        let Some(fwd) = &self.0.forwarder else {
            let (Pending::Upstream(mut resp, ..) | Pending::Chase(mut resp, ..)) = *pending;
            resp.metadata.response_code = ResponseCode::Refused;
            return resp;
        };
        match *pending {
            Pending::Upstream(mut resp, name, qtype, qclass) => {
                match fwd.resolve(&name, qtype, qclass).await {
                    Ok(reply) => {
                        resp.metadata.response_code = reply.rcode;
                        resp.answers = reply.answers;
                        resp.authority = reply.authority;
                        resp.additionals = reply.additionals;
                    }
                    Err(e) => {
                        tracing::debug!(name = %name, error = %e, "forwarding failed");
                        resp.metadata.response_code = ResponseCode::ServFail;
                    }
                }
                resp
            }
            Pending::Chase(mut resp, target, qtype) => {
                // The CNAME alone is still a correct answer when this fails.
                if let Ok(reply) = fwd
                    .resolve(&target.to_lowercase(), qtype, DNSClass::IN)
                    .await
                {
                    resp.answers.extend(reply.answers);
                }
                resp
            }
        }
    }
}

/// Upstream work a response still needs.
#[derive(Debug)]
pub enum Pending {
    /// The question is not a cluster name: ask upstream (name, type, class).
    Upstream(Response, Name, RecordType, DNSClass),
    /// An ExternalName's CNAME: append the target's addresses from upstream.
    Chase(Response, Name, RecordType),
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let start = Instant::now();
        let resp = self.respond(request).await;
        let rcode = resp.metadata.response_code;
        let info = match response_handle.send_response(resp.message(request)).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, src = %request.src(), "sending a response failed");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        };
        // UDP requests are counted by the UDP loop, which also serves cached bytes.
        if request.protocol() != Protocol::Udp {
            self.0.metrics.observe(
                Transport::Tcp,
                request.src().is_ipv6(),
                resp.qtype,
                rcode,
                start.elapsed(),
            );
        }
        info
    }
}
