use crate::support::*;
use cairn_core::audit::Action;
use cairn_core::auth::ScimToken;
use cairn_core::ids::{QuotaGb, TokenId};
use cairn_core::store::SettingsChange;
use cairn_core::tenant::TokenInfo;

#[tokio::test]
async fn settings_change_and_are_audited_together() {
    let db = db_async().await;
    let t = tenant(&*db.store, "acme").await;
    let change = SettingsChange {
        scim_enabled: Some(false),
        account_size_gb: Some(QuotaGb::new(75).unwrap()),
        max_account_size_gb: None,
        stale_days: None,
    };
    let updated = db
        .store
        .update_settings(
            &t.id,
            &change,
            vec![
                draft(&t.id, Action::ScimDisabled),
                draft(&t.id, Action::AccountSizeChanged),
            ],
        )
        .await
        .unwrap();
    assert!(!updated.scim_enabled);
    assert_eq!(updated.account_size_gb.get(), 75);
    assert_eq!(updated.max_account_size_gb, None);
    assert_eq!(audit_count(&*db.store, &t.id).await, 3);

    // The operator's cap (`cairn tenant limit`): set, kept by other changes, removed.
    let cap = SettingsChange {
        max_account_size_gb: Some(Some(QuotaGb::new(40).unwrap())),
        ..SettingsChange::default()
    };
    let capped = db
        .store
        .update_settings(&t.id, &cap, vec![draft(&t.id, Action::TenantLimitChanged)])
        .await
        .unwrap();
    assert_eq!(capped.max_account_size_gb.map(QuotaGb::get), Some(40));
    assert_eq!(capped.account_size_gb.get(), 75);
    let read = db.store.get_tenant(&t.id).await.unwrap().unwrap();
    assert_eq!(read.max_account_size_gb.map(QuotaGb::get), Some(40));
    let cleared = db
        .store
        .update_settings(
            &t.id,
            &SettingsChange {
                max_account_size_gb: Some(None),
                ..SettingsChange::default()
            },
            vec![draft(&t.id, Action::TenantLimitChanged)],
        )
        .await
        .unwrap();
    assert_eq!(cleared.max_account_size_gb, None);
}

#[tokio::test]
async fn a_new_token_revokes_the_old_one() {
    let db = db_async().await;
    let t = tenant(&*db.store, "acme").await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let tok = ScimToken::generate();
        let info = TokenInfo {
            id: TokenId::random(),
            tenant_id: t.id.clone(),
            hint: tok.hint(),
            created_at: now(),
            last_used_at: None,
            last_user_agent: None,
        };
        db.store
            .replace_token(
                &t.id,
                &info,
                &tok.hash(),
                draft(&t.id, Action::TokenGenerated),
            )
            .await
            .unwrap();
        ids.push((info.id, tok));
    }
    let state = db.store.scim_auth_state(&t.id).await.unwrap().unwrap();
    assert_eq!(state.tokens.len(), 1);
    assert_eq!(state.tokens[0].0, ids[1].0);
    assert!(state.tokens[0].1.ct_eq(&ids[1].1.hash()));
    db.store
        .touch_token(&t.id, &ids[1].0, now(), Some("Okta SCIM Client 1.0.0"))
        .await
        .unwrap();
    let info = db.store.token_info(&t.id).await.unwrap().unwrap();
    assert_eq!(
        info.last_user_agent.as_deref(),
        Some("Okta SCIM Client 1.0.0")
    );
    assert!(info.last_used_at.is_some());
    assert!(!info.hint.contains(ids[1].1.expose()));
}

#[tokio::test]
async fn concurrent_token_generations_leave_one_live_token() {
    let db = db_async().await;
    let t = tenant(&*db.store, "acme").await;
    for _round in 0..3 {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let store = db.store.clone();
            let tid = t.id.clone();
            set.spawn(async move {
                let tok = ScimToken::generate();
                let info = TokenInfo {
                    id: TokenId::random(),
                    tenant_id: tid.clone(),
                    hint: tok.hint(),
                    created_at: now(),
                    last_used_at: None,
                    last_user_agent: None,
                };
                store
                    .replace_token(
                        &tid,
                        &info,
                        &tok.hash(),
                        draft(&tid, Action::TokenGenerated),
                    )
                    .await
                    .unwrap();
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
        let state = db.store.scim_auth_state(&t.id).await.unwrap().unwrap();
        assert_eq!(
            state.tokens.len(),
            1,
            "each generation revokes every other token"
        );
    }
}
