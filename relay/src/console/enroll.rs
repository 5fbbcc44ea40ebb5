//! Enrollment token requests (`deskside enroll-token`): create, list, revoke.
//!
//! Each handler runs after the dispatch in `console_conn` checked the
//! caller's role and token; it never reads the connection itself.

use deskside_protocol::console::{ConsoleResponse, IssuedEnrollToken};
use deskside_protocol::token::EnrollToken;
use deskside_protocol::Refusal;

use super::{run, Caller};
use crate::conn::{check_text, internal_error};
use crate::secrets::{hash_secret, new_enroll_secret};

/// Issues an enrollment token within the organisation's limits.
pub async fn create(
    caller: Caller<'_>,
    uses: u32,
    expires_in_secs: u64,
    group: Option<String>,
) -> Result<ConsoleResponse, Refusal> {
    let Caller {
        shared,
        technician,
        org,
        actor,
        now,
        ..
    } = caller;
    if let Some(group) = &group {
        if group.trim().is_empty() {
            return Err(Refusal::Invalid("the group name is empty".to_owned()));
        }
        check_text("group", group, 64)?;
    }
    let limits = crate::enroll_limits::load(shared, org).await?;
    limits.check(uses, expires_in_secs)?;
    let secret = new_enroll_secret().map_err(|_| internal_error(&"random generator failed"))?;
    let hash = hash_secret(&secret);
    let expires_at = now.saturating_add(expires_in_secs as i64);
    let created_by = Some(technician.id);
    run(shared, move |s| {
        s.create_enroll_token_in_group(
            org,
            &hash,
            uses,
            expires_at,
            created_by,
            group.as_deref(),
            &actor,
            now,
        )
    })
    .await?;
    let token = EnrollToken {
        relay: shared.public_addr.clone(),
        fingerprint: shared.fingerprint,
        secret,
        other_relays: crate::relay_list::other_relays(shared).await,
    };
    Ok(ConsoleResponse::EnrollToken(IssuedEnrollToken {
        token: token.encode(),
        uses,
        expires_at,
    }))
}

/// The organisation's enrollment tokens.
pub async fn list(caller: Caller<'_>) -> Result<ConsoleResponse, Refusal> {
    let Caller { shared, org, .. } = caller;
    Ok(ConsoleResponse::EnrollTokens(
        run(shared, move |s| s.list_enroll_tokens(org)).await?,
    ))
}

/// Revokes an enrollment token.
pub async fn revoke(caller: Caller<'_>, id: u64) -> Result<ConsoleResponse, Refusal> {
    let Caller {
        shared,
        org,
        actor,
        now,
        ..
    } = caller;
    let revoked = run(shared, move |s| s.revoke_enroll_token(org, id, &actor, now))
        .await?
        .ok_or_else(|| {
            Refusal::NotFound(format!(
                "no enrollment token {id}: list them with `deskside enroll-token list`"
            ))
        })?;
    Ok(ConsoleResponse::EnrollTokenRevoked(revoked))
}
