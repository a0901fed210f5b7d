//! Checks that a query was refused, and by whom, with every log entry the refusal must
//! leave: shared by the end-to-end refusal tests.

use alpr_node::client::SearchParams;
use alpr_proto::RefusalReason;
use alpr_proto::envelope::{self, REFUSAL};
use alpr_proto::pb::{Refusal, TargetStatus};
use anyhow::{Context, Result, ensure};

use crate::{Federation, investigator_of};

/// The honest broker refuses `requester`'s query to `target` with `want`; its routing log
/// and the requester's outbound log say why, and the owner never saw the query.
pub async fn by_broker(
    fed: &Federation,
    requester: &str,
    target: &str,
    p: &SearchParams,
    want: RefusalReason,
) -> Result<()> {
    let (q, resp) = fed.search(requester, p).await?;
    let r = resp
        .results
        .iter()
        .find(|r| r.ori == target)
        .context("no result for the target")?;
    ensure!(
        (r.status, r.reason, r.decided_by.as_str())
            == (TargetStatus::Refused as i32, want as i32, "broker"),
        "expected {} by the broker, got status {} reason {} by {:?}: {}",
        want.as_str_name(),
        r.status,
        r.reason,
        r.decided_by,
        r.detail
    );
    ensure!(r.reply.is_none(), "no reply, no reads");
    let qid = hex::encode(&q.query_id);
    let log = fed.broker_log()?;
    ensure!(
        log.iter()
            .any(|l| l.query_id.as_deref() == Some(qid.as_str())
                && l.target.as_deref() == Some(target)
                && l.decision == "refused"
                && l.reason_code.as_deref() == Some(want.as_str_name())),
        "broker log lacks the refusal: {log:?}"
    );
    let out = fed.audit(requester, Some("outbound_result"))?;
    ensure!(
        out.iter()
            .any(|e| e.entry.query_id.as_deref() == Some(qid.as_str())
                && e.entry.reason_code.as_deref() == Some(want.as_str_name())),
        "the requester's outbound log lacks the refusal"
    );
    ensure!(
        fed.audit(target, Some("inbound_query"))?
            .iter()
            .all(|e| e.entry.query_id.as_deref() != Some(qid.as_str())),
        "the owner saw a query the broker refused"
    );
    Ok(())
}

/// A misbehaving broker forwards the query anyway; the owner's node refuses it with `want`
/// on its own, signs the refusal and logs it (requester, investigator, no reads).
pub async fn by_node(
    fed: &Federation,
    requester: &str,
    target: &str,
    p: &SearchParams,
    want: RefusalReason,
) -> Result<()> {
    let (q, signed) = fed.sign_query(requester, p)?;
    let endorsed = fed.endorse(requester, &signed)?;
    let reply = fed.rogue_forward(target, endorsed).await?;
    let (signer, refusal): (_, Refusal) =
        envelope::open_as(&fed.trust, &reply, REFUSAL, alpr_pki::now_unix())
            .with_context(|| format!("expected a signed refusal, got {}", reply.payload_type))?;
    ensure!(
        signer.ori() == Some(target),
        "refusal signed by the owner's node"
    );
    ensure!(
        refusal.reason == want as i32,
        "expected {}, got {}: {}",
        want.as_str_name(),
        refusal.reason,
        refusal.detail
    );
    let qid = hex::encode(&q.query_id);
    let rows = fed.audit(target, Some("inbound_query"))?;
    let row = rows
        .iter()
        .find(|e| e.entry.query_id.as_deref() == Some(qid.as_str()))
        .context("audit row at the refusing node")?;
    ensure!(
        row.entry.decision == "refused",
        "logged as {}",
        row.entry.decision
    );
    ensure!(row.entry.reason_code.as_deref() == Some(want.as_str_name()));
    ensure!(row.entry.requester_ori.as_deref() == Some(requester));
    ensure!(row.entry.requester_user.as_deref() == Some(investigator_of(requester).as_str()));
    ensure!(row.entry.count.is_none(), "no reads returned");
    Ok(())
}

/// The requester's own node refuses before endorsing; its outbound log says why.
pub async fn locally(
    fed: &Federation,
    requester: &str,
    p: &SearchParams,
    want: RefusalReason,
) -> Result<()> {
    let err = match fed.search(requester, p).await {
        Ok(_) => anyhow::bail!("the requester's node sent a query it should refuse"),
        Err(e) => e.to_string(),
    };
    ensure!(err.contains(want.as_str_name()), "{err}");
    let out = fed.audit(requester, Some("outbound_query"))?;
    let last = out.last().context("no outbound entry")?;
    ensure!(last.entry.decision == "refused");
    ensure!(last.entry.reason_code.as_deref() == Some(want.as_str_name()));
    Ok(())
}
