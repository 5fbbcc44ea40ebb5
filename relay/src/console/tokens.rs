//! Technician token requests (`deskside tokens`): create, list, revoke.
//!
//! Each handler runs after the dispatch in `console_conn` checked the
//! caller's role and token; it never reads the connection itself.

use deskside_protocol::console::{ConsoleResponse, IssuedTechnicianToken};
use deskside_protocol::token::LoginString;
use deskside_protocol::{Refusal, Role, TechnicianId};

use super::{run, Caller};
use crate::conn::{check_text, internal_error};
use crate::secrets::{hash_secret, new_technician_token};
use crate::store::AccessEnd;

/// Issues a technician token under a name no active token uses.
pub async fn create(
    caller: Caller<'_>,
    name: String,
    role: Role,
    expires_in_secs: Option<u64>,
) -> Result<ConsoleResponse, Refusal> {
    let Caller {
        shared,
        org,
        actor,
        now,
        ..
    } = caller;
    if name.trim().is_empty() {
        return Err(Refusal::Invalid(
            "the technician's name is empty".to_owned(),
        ));
    }
    check_text("name", &name, 100)?;
    let wanted = name.clone();
    if let Some(existing) = run(shared, move |s| {
        s.active_technician_named(org, &wanted, now)
    })
    .await?
    {
        return Err(Refusal::Invalid(format!(
                "an active technician token is already named \"{}\" (token {}): employees see this name when a session is requested, so each name is used once; choose another name, or revoke token {} first",
                existing.name, existing.id, existing.id
            )));
    }
    let token = new_technician_token().map_err(|_| internal_error(&"random generator failed"))?;
    let hash = hash_secret(&token);
    let expires_at =
        expires_in_secs.map(|secs| now.saturating_add(secs.min(i64::MAX as u64) as i64));
    let info = run(shared, move |s| {
        s.create_technician_token(org, &name, role, &hash, expires_at, &actor, now)
    })
    .await?;
    let login = LoginString {
        relay: shared.public_addr.clone(),
        fingerprint: shared.fingerprint,
        token: token.clone(),
        other_relays: crate::relay_list::other_relays(shared).await,
    };
    Ok(ConsoleResponse::TechnicianToken(IssuedTechnicianToken {
        info,
        token,
        login: login.encode(),
    }))
}

/// The organisation's technician tokens.
pub async fn list(caller: Caller<'_>) -> Result<ConsoleResponse, Refusal> {
    let Caller { shared, org, .. } = caller;
    Ok(ConsoleResponse::TechnicianTokens(
        run(shared, move |s| s.list_technician_tokens(org)).await?,
    ))
}

/// Revokes a technician token: its connections close and its sessions end now.
pub async fn revoke(caller: Caller<'_>, id: TechnicianId) -> Result<ConsoleResponse, Refusal> {
    let Caller {
        shared,
        technician,
        link,
        org,
        actor,
        now,
    } = caller;
    let audit_actor = actor.clone();
    let revoked = run(shared, move |s| {
        s.revoke_technician_token(org, id, &audit_actor, now)
    })
    .await??
    .ok_or_else(|| {
        Refusal::NotFound(format!(
            "no technician token {id}: list them with `deskside tokens list`"
        ))
    })?;
    // Its open connections close and its sessions end now, not at
    // its next login; an administrator revoking their own token
    // gets this answer first, and this connection closes at its
    // next request.
    let own = (id == technician.id).then(|| {
        link.access.mark_revoked();
        link.connection
    });
    crate::access::end_access_but(shared, id, AccessEnd::Revoked, &actor, own).await;
    Ok(ConsoleResponse::TechnicianTokenRevoked(revoked))
}
