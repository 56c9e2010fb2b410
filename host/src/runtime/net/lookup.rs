//! `wasi:sockets/ip-name-lookup` for a run, in place of wasmtime-wasi's:
//! only names a `tcp://` grant names are resolved (any other is refused
//! before a query leaves the host, so lookups cannot carry data out), the
//! forgery guard drops internal addresses from the answer, and every address
//! handed to the guest is remembered so the socket check lets it connect to
//! the granted ports there. Resolution itself is delegated to wasmtime-wasi.

use std::net::IpAddr;
use std::sync::Arc;

use wasmtime::component::{HasData, Resource};
use wasmtime_wasi::p2::bindings::sockets::{ip_name_lookup, network};
use wasmtime_wasi::p2::{DynPollable, SocketError};
use wasmtime_wasi::sockets::WasiSocketsCtxView;

use super::RunNet;
use super::guard::is_internal;
use crate::runtime::sandbox::RunState;

/// Marks the shadowing implementation for the linker.
pub(crate) struct GrantedLookup;

impl HasData for GrantedLookup {
    type Data<'a> = LookupView<'a>;
}

/// wasmtime-wasi's sockets view plus the run's grants.
pub(crate) struct LookupView<'a> {
    inner: WasiSocketsCtxView<'a>,
    net: &'a Arc<RunNet>,
}

impl GrantedLookup {
    /// The view of a run's state the linker hands the functions.
    pub(crate) fn view(state: &mut RunState) -> LookupView<'_> {
        let (inner, net) = state.sockets_and_net();
        LookupView { inner, net }
    }
}

fn to_ip(addr: &network::IpAddress) -> IpAddr {
    match *addr {
        network::IpAddress::Ipv4((a, b, c, d)) => IpAddr::from([a, b, c, d]),
        network::IpAddress::Ipv6((a, b, c, d, e, f, g, h)) => IpAddr::from([a, b, c, d, e, f, g, h]),
    }
}

impl ip_name_lookup::Host for LookupView<'_> {
    fn resolve_addresses(
        &mut self,
        network: Resource<network::Network>,
        name: String,
    ) -> Result<Resource<ip_name_lookup::ResolveAddressStream>, SocketError> {
        let literal = name.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok();
        let ports: Vec<_> = match self.net.grants() {
            Some(g) if !literal => g.tcp_names(&name).map(|h| h.port).collect(),
            _ => Vec::new(),
        };
        if !literal && ports.is_empty() {
            let net = self.net;
            net.journal.lock().unwrap().host_line(format!(
                "name lookup of {name:?} refused: template \"{}\" grants no tcp:// entry for it (allowed: {})",
                net.template,
                net.granted_list()
            ));
            return Err(network::ErrorCode::PermanentResolverFailure.into());
        }
        let stream = ip_name_lookup::Host::resolve_addresses(&mut self.inner, network, name.clone())?;
        if let Some(g) = &self.net.granted {
            g.lookups.lock().unwrap().insert(stream.rep(), (name, ports));
        }
        Ok(stream)
    }
}

impl ip_name_lookup::HostResolveAddressStream for LookupView<'_> {
    fn resolve_next_address(
        &mut self,
        stream: Resource<ip_name_lookup::ResolveAddressStream>,
    ) -> Result<Option<network::IpAddress>, SocketError> {
        let rep = stream.rep();
        loop {
            let next = ip_name_lookup::HostResolveAddressStream::resolve_next_address(
                &mut self.inner,
                Resource::new_borrow(rep),
            )?;
            let Some(addr) = next else { return Ok(None) };
            let Some(granted) = &self.net.granted else { return Ok(Some(addr)) };
            let lookup = granted.lookups.lock().unwrap().get(&rep).cloned();
            // A literal address passes through: the connect check decides.
            let Some((name, ports)) = lookup else { return Ok(Some(addr)) };
            let ip = to_ip(&addr).to_canonical();
            if is_internal(ip) {
                self.net.journal.lock().unwrap().host_line(format!(
                    "{name} resolves to {ip}, an internal address: left out of the answer (a grant must name an internal address literally, e.g. tcp://{}:PORT)",
                    if ip.is_ipv6() { format!("[{ip}]") } else { ip.to_string() }
                ));
                continue;
            }
            granted.tcp_resolved.lock().unwrap().entry(ip).or_default().extend_from_slice(&ports);
            return Ok(Some(addr));
        }
    }

    fn subscribe(
        &mut self,
        stream: Resource<ip_name_lookup::ResolveAddressStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        ip_name_lookup::HostResolveAddressStream::subscribe(&mut self.inner, stream)
    }

    fn drop(&mut self, stream: Resource<ip_name_lookup::ResolveAddressStream>) -> wasmtime::Result<()> {
        if let Some(g) = &self.net.granted {
            g.lookups.lock().unwrap().remove(&stream.rep());
        }
        ip_name_lookup::HostResolveAddressStream::drop(&mut self.inner, stream)
    }
}

impl network::Host for LookupView<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<network::ErrorCode> {
        network::Host::convert_error_code(&mut self.inner, error)
    }

    fn network_error_code(&mut self, err: Resource<wasmtime::Error>) -> wasmtime::Result<Option<network::ErrorCode>> {
        network::Host::network_error_code(&mut self.inner, err)
    }
}

impl network::HostNetwork for LookupView<'_> {
    fn drop(&mut self, network: Resource<network::Network>) -> wasmtime::Result<()> {
        network::HostNetwork::drop(&mut self.inner, network)
    }
}
