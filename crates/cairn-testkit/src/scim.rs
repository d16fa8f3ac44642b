//! SCIM tenants made through the service layer, as the dashboard and the CLI make them.

use cairn_core::audit::RequestMeta;
use cairn_core::auth::OperatorCtx;
use cairn_core::ids::TenantId;
use cairn_core::service::{Authority, Services};
use cairn_core::store::*;

/// Turns SCIM on for `tenant` and returns a new SCIM bearer token of it (the local
/// operator acting, as `cairn scim enable` and `cairn scim token` do).
pub async fn enable_scim(services: &Services, tenant: &TenantId) -> String {
    let op = OperatorCtx::local_operator();
    services
        .update_settings(
            Authority::Operator(&op),
            tenant,
            SettingsChange {
                scim_enabled: Some(true),
                account_size_gb: None,
                max_account_size_gb: None,
                stale_days: None,
            },
            &RequestMeta::default(),
        )
        .await
        .unwrap();
    let (token, _) = services
        .generate_token(Authority::Operator(&op), tenant, &RequestMeta::default())
        .await
        .unwrap();
    token.expose().to_owned()
}
