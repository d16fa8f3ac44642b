//! Each tenant's bounded share of the group writes in flight. A group POST, PUT, PATCH or
//! DELETE can name up to `MEMBERS_PER_WRITE_MAX` members and is written in one
//! transaction; on SQLite every tenant's writes go through one writer, in arrival order.
//! At most [`GROUP_WRITES_PER_TENANT`] group writes of one tenant are in flight at once
//! (from the moment the request is authenticated, body included), so another tenant's
//! write queues behind at most that many; a further one waits up to [`WAIT`] for a slot,
//! then gets `429` with `Retry-After` (RFC 6585 §4), which Okta and Entra retry.

use super::extract::Scim;
use super::response::ApiError;
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use cairn_core::ids::TenantId;
use cairn_scim::ScimError;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Group writes of one tenant in flight at once, unless `serve` sets another bound
/// (`--scim-group-writes-per-tenant`).
pub const GROUP_WRITES_PER_TENANT: u32 = 4;

/// The bound in force; 0 turns it off.
static PER_TENANT: AtomicU32 = AtomicU32::new(GROUP_WRITES_PER_TENANT);

/// Sets the bound for the process (at startup); 0 turns it off.
pub fn set_per_tenant(n: u32) {
    PER_TENANT.store(n, Ordering::Relaxed);
}

/// How long a group write waits for one of its tenant's slots before `429`.
const WAIT: Duration = Duration::from_secs(2);

/// The tenants with group writes in flight or waiting, and their slots. An entry lives
/// only while someone holds or waits for its semaphore, so the map is bounded by the
/// authenticated tenants writing groups right now.
static SLOTS: LazyLock<Mutex<HashMap<TenantId, Arc<Semaphore>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn slots() -> std::sync::MutexGuard<'static, HashMap<TenantId, Arc<Semaphore>>> {
    // The map stays consistent even if a holder panicked: every change is one call.
    SLOTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Forgets the tenant's semaphore once nobody holds or waits for it.
fn tidy(tenant: &TenantId) {
    let mut map = slots();
    if map.get(tenant).is_some_and(|s| Arc::strong_count(s) == 1) {
        map.remove(tenant);
    }
}

/// An authenticated SCIM request that holds one of its tenant's group-write slots until
/// the response is produced. Authentication (and the rate limit) come first, so only a
/// tenant's own token can take its slots.
pub struct GroupWrite {
    pub ctx: Scim,
    permit: Option<OwnedSemaphorePermit>,
    tenant: TenantId,
}

impl Drop for GroupWrite {
    fn drop(&mut self) {
        drop(self.permit.take());
        tidy(&self.tenant);
    }
}

impl FromRequestParts<AppState> for GroupWrite {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ctx = Scim::from_request_parts(parts, state).await?;
        let tenant = ctx.0.tenant_id().clone();
        let per_tenant = PER_TENANT.load(Ordering::Relaxed);
        if per_tenant == 0 {
            return Ok(GroupWrite {
                ctx,
                permit: None,
                tenant,
            });
        }
        let sem = slots()
            .entry(tenant.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(per_tenant as usize)))
            .clone();
        let acquired = tokio::time::timeout(WAIT, sem.acquire_owned()).await;
        match acquired {
            Ok(Ok(permit)) => Ok(GroupWrite {
                ctx,
                permit: Some(permit),
                tenant,
            }),
            _ => {
                tidy(&tenant);
                tracing::debug!(%tenant, "group writes of this tenant at their bound");
                Err(ApiError(ScimError::new(
                    429,
                    None,
                    format!(
                        "this tenant already has {per_tenant} group changes in progress; \
                         retry after 1 s"
                    ),
                )))
            }
        }
    }
}
