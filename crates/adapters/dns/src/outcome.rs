//! Classification of hickory's lookup results into [`LookupOutcome`]s.
//!
//! Kept apart from the IO so that the mapping, which decides what the failover quorum
//! counts as "gone" and what as "unknown", is checked by plain unit tests.

use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::{DnsError, NetError, NoRecords};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;
use sre_core::ports::{LookupOutcome, RecordKind};
use std::net::IpAddr;

/// The addresses of `kind` in an answer, sorted so that two resolvers returning the same
/// set in a different order agree.
pub(crate) fn addresses(lookup: &Lookup, kind: RecordKind) -> Vec<IpAddr> {
    let mut addrs: Vec<IpAddr> = lookup
        .answers()
        .iter()
        .filter_map(|r| match (&r.data, kind) {
            (RData::A(a), RecordKind::A) => Some(IpAddr::V4(a.0)),
            (RData::AAAA(a), RecordKind::Aaaa) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    addrs.sort_unstable();
    addrs.dedup();
    addrs
}

/// An answer with addresses is an `Answer`; a NOERROR answer holding only other records
/// (a CNAME chain ending nowhere) has no address of this kind, which is NODATA.
pub(crate) fn from_addresses(addrs: Vec<IpAddr>) -> LookupOutcome {
    if addrs.is_empty() {
        LookupOutcome::NoData
    } else {
        LookupOutcome::Answer(addrs)
    }
}

/// What a failed lookup means for the quorum.
pub(crate) fn from_error(err: &NetError) -> LookupOutcome {
    match err {
        NetError::Dns(DnsError::NoRecordsFound(NoRecords { response_code, .. })) => {
            match *response_code {
                ResponseCode::NXDomain => LookupOutcome::NxDomain,
                ResponseCode::NoError => LookupOutcome::NoData,
                other => LookupOutcome::Error(format!("no records, response code {other}")),
            }
        }
        NetError::Dns(DnsError::ResponseCode(code)) => from_code(*code),
        NetError::Timeout => LookupOutcome::Timeout,
        NetError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => LookupOutcome::Timeout,
        other => LookupOutcome::Error(other.to_string()),
    }
}

fn from_code(code: ResponseCode) -> LookupOutcome {
    match code {
        ResponseCode::ServFail => LookupOutcome::ServFail,
        ResponseCode::Refused => LookupOutcome::Refused,
        ResponseCode::NXDomain => LookupOutcome::NxDomain,
        other => LookupOutcome::Error(format!("response code {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::op::Query;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn check(err: &NetError, expect: &LookupOutcome) {
        assert_eq!(&from_error(err), expect, "{err:?}");
    }

    fn no_records(code: ResponseCode) -> NetError {
        NetError::Dns(DnsError::NoRecordsFound(NoRecords::new(
            Query::default(),
            code,
        )))
    }

    #[test]
    fn negative_answers_are_told_apart() {
        check(
            &no_records(ResponseCode::NXDomain),
            &LookupOutcome::NxDomain,
        );
        check(&no_records(ResponseCode::NoError), &LookupOutcome::NoData);
    }

    #[test]
    fn failures_say_nothing_about_the_name() {
        check(
            &NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail)),
            &LookupOutcome::ServFail,
        );
        check(
            &NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused)),
            &LookupOutcome::Refused,
        );
        check(&NetError::Timeout, &LookupOutcome::Timeout);
        check(
            &std::io::Error::from(std::io::ErrorKind::TimedOut).into(),
            &LookupOutcome::Timeout,
        );
        assert!(matches!(
            from_error(&NetError::Dns(DnsError::ResponseCode(
                ResponseCode::FormErr
            ))),
            LookupOutcome::Error(_)
        ));
        assert!(matches!(
            from_error(&std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into()),
            LookupOutcome::Error(_)
        ));
        assert!(matches!(
            from_error(&NetError::NoConnections),
            LookupOutcome::Error(_)
        ));
    }

    #[test]
    fn answers_keep_only_the_asked_kind_sorted_and_once() {
        use hickory_resolver::proto::rr::rdata::{A, AAAA, CNAME};
        use hickory_resolver::proto::rr::{Name, Record};
        let name = Name::from_ascii("x.sre.test.").expect("valid name");
        let rec = |d: RData| Record::from_rdata(name.clone(), 60, d);
        let (hi, lo) = (Ipv4Addr::new(192, 0, 2, 9), Ipv4Addr::new(192, 0, 2, 1));
        let lookup = Lookup::new_with_max_ttl(
            Query::default(),
            [
                rec(RData::CNAME(CNAME(name.clone()))),
                rec(RData::A(A(hi))),
                rec(RData::AAAA(AAAA(Ipv6Addr::LOCALHOST))),
                rec(RData::A(A(lo))),
                rec(RData::A(A(hi))),
            ],
        );
        assert_eq!(
            addresses(&lookup, RecordKind::A),
            vec![IpAddr::V4(lo), IpAddr::V4(hi)]
        );
        assert_eq!(
            addresses(&lookup, RecordKind::Aaaa),
            vec![IpAddr::V6(Ipv6Addr::LOCALHOST)]
        );
        let only_cname =
            Lookup::new_with_max_ttl(Query::default(), [rec(RData::CNAME(CNAME(name.clone())))]);
        assert_eq!(
            from_addresses(addresses(&only_cname, RecordKind::A)),
            LookupOutcome::NoData
        );
    }
}
