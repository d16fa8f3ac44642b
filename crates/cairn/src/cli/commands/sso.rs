//! `cairn sso …`: a tenant's SAML identity provider, SSO scope, on/off, and the values
//! to give the identity provider. A metadata URL is fetched with the rules of
//! `cairn_web::idp_fetch` and kept, for `cairn serve` to fetch again on its schedule. `cairn sso oidc` sets an OpenID provider
//! instead (used in preference to SAML while enabled).

use crate::cli::config::tenant_id;
use crate::cli::{Ctx, SsoCmd};
use anyhow::{bail, Context, Result};
use cairn_core::audit::Actor;
use cairn_core::ids::TenantId;
use cairn_core::oidc::{ClientSecret, OidcConfig};
use cairn_core::sso::{FetchedMetadata, SamlIdpConfig, SsoScope};
use cairn_core::store::Role;
use cairn_web::idp_fetch::IdpHttp;
use cairn_web::sso::{acs_url, fetch_idp_metadata, login_url, parse_idp_metadata, sp_entity_id};
use cairn_web::sso_oidc::callback_url as oidc_callback;
use serde_json::json;

pub async fn run(cx: &Ctx, cmd: SsoCmd) -> Result<()> {
    match cmd {
        SsoCmd::Saml {
            tenant,
            metadata_file,
            metadata_url,
            allow_insecure_idp,
        } => {
            let id = tenant_id(&tenant)?;
            let md = match (&metadata_file, &metadata_url) {
                (Some(file), _) => {
                    let xml = std::fs::read_to_string(file)
                        .with_context(|| format!("reading {}", file.display()))?;
                    let md = parse_idp_metadata(&xml).map_err(anyhow::Error::msg)?;
                    FetchedMetadata {
                        xml,
                        entity_id: md.entity_id,
                        sso_url: md.sso_url,
                        certificates: md.certificates,
                    }
                }
                (None, Some(url)) => fetch_idp_metadata(&IdpHttp::new(allow_insecure_idp), url)
                    .await
                    .map_err(anyhow::Error::msg)?,
                (None, None) => bail!("give --metadata-file or --metadata-url"),
            };
            let scope = current(cx, &id).await?.map(|c| c.scope).unwrap_or_default();
            let config = SamlIdpConfig {
                tenant_id: id.clone(),
                enabled: true,
                idp_entity_id: md.entity_id,
                sso_url: md.sso_url,
                certificates: md.certificates,
                metadata_xml: Some(md.xml),
                metadata_url,
                scope,
                updated_at: cx.svc.clock.now(),
            };
            let c = save(cx, config).await?;
            outln!(
                "SAML single sign-on enabled with identity provider {} ({} signing certificate(s))",
                c.idp_entity_id,
                c.certificates.len()
            );
            if c.scope == SsoScope::default() {
                outln!("Nobody is in the SSO scope yet: set it with `cairn sso scope`.");
            }
            Ok(())
        }
        SsoCmd::Oidc {
            tenant,
            issuer,
            client_id,
            client_secret_stdin: _,
        } => {
            let id = tenant_id(&tenant)?;
            let mut secret = String::new();
            std::io::stdin()
                .read_line(&mut secret)
                .context("reading the client secret from standard input")?;
            let secret = secret.trim_end_matches(['\r', '\n']).to_owned();
            // The scope carries over from the OpenID or SAML settings already there.
            let scope = match cx.svc.oidc_config(&id).await? {
                Some(c) => c.scope,
                None => current(cx, &id).await?.map(|c| c.scope).unwrap_or_default(),
            };
            let config = OidcConfig {
                tenant_id: id.clone(),
                enabled: true,
                issuer,
                client_id,
                client_secret: ClientSecret::new(secret),
                scope,
                updated_at: cx.svc.clock.now(),
            };
            let c = cx
                .svc
                .set_oidc_config(Actor::Operator, config, cx.meta.clone())
                .await?;
            outln!(
                "OpenID Connect single sign-on enabled with issuer {} (redirect URI {})",
                c.issuer,
                oidc_callback(&cx.svc.public_url, &id)
            );
            if c.scope == SsoScope::default() {
                outln!("Nobody is in the SSO scope yet: set it with `cairn sso scope`.");
            }
            Ok(())
        }
        SsoCmd::Scope {
            tenant,
            admins,
            all_accounts,
            accounts,
        } => {
            let id = tenant_id(&tenant)?;
            let scope = SsoScope {
                admins,
                all_accounts,
                accounts: accounts
                    .as_deref()
                    .map(SsoScope::parse_accounts)
                    .unwrap_or_default(),
            };
            let saml = current(cx, &id).await?;
            let oidc = cx.svc.oidc_config(&id).await?;
            if saml.is_none() && oidc.is_none() {
                bail!(
                    "no identity provider is set for this tenant: run `cairn sso saml` or \
                     `cairn sso oidc` first"
                );
            }
            if let Some(mut c) = saml {
                c.scope = scope.clone();
                save(cx, c).await?;
            }
            if let Some(mut c) = oidc {
                c.scope = scope.clone();
                cx.svc
                    .set_oidc_config(Actor::Operator, c, cx.meta.clone())
                    .await?;
            }
            outln!("SSO scope: {}", serde_json::to_string(&scope)?);
            Ok(())
        }
        SsoCmd::Disable { tenant } => {
            let id = tenant_id(&tenant)?;
            let saml = current(cx, &id).await?;
            let oidc = cx.svc.oidc_config(&id).await?;
            if saml.is_none() && oidc.is_none() {
                outln!("Single sign-on is not set up for this tenant.");
                return Ok(());
            }
            if let Some(mut c) = saml {
                c.enabled = false;
                save(cx, c).await?;
            }
            if let Some(mut c) = oidc {
                c.enabled = false;
                cx.svc
                    .set_oidc_config(Actor::Operator, c, cx.meta.clone())
                    .await?;
            }
            outln!("Single sign-on disabled");
            Ok(())
        }
        SsoCmd::Role {
            tenant,
            group,
            role,
        } => {
            let id = tenant_id(&tenant)?;
            let role = Role::parse(&role);
            let r = cx
                .svc
                .set_sso_group_role(Actor::Operator, &id, &group, role, cx.meta.clone())
                .await?;
            match role {
                Some(role) => outln!(
                    "Members of group {} get the {} role when they sign in through SSO",
                    r.display_name,
                    role.as_str()
                ),
                None => outln!("Group {} no longer grants a dashboard role", r.display_name),
            }
            Ok(())
        }
        SsoCmd::PasswordSignIn { tenant, off, on } => {
            let id = tenant_id(&tenant)?;
            debug_assert!(off != on);
            let st = cx
                .svc
                .set_password_sign_in(Actor::Operator, &id, on && !off, cx.meta.clone())
                .await?;
            if st.password_sign_in {
                outln!("Password sign-in to the dashboard is on");
            } else {
                outln!(
                    "Password sign-in to the dashboard is off: dashboard users sign in through \
                     single sign-on{}",
                    match &st.break_glass {
                        Some(e) => format!(" (break-glass administrator: {e})"),
                        None => " (no break-glass administrator: name one with `cairn user \
                                  break-glass`)"
                            .into(),
                    }
                );
            }
            Ok(())
        }
        SsoCmd::Show { tenant, json } => {
            let id = tenant_id(&tenant)?;
            if cx.svc.store.get_tenant(&id).await?.is_none() {
                bail!("no such tenant");
            }
            let base = &cx.svc.public_url;
            let c = current(cx, &id).await?;
            let o = cx.svc.oidc_config(&id).await?;
            let doc = json!({
                "service_provider": {
                    "entity_id": sp_entity_id(base, &id),
                    "acs_url": acs_url(base, &id),
                    "metadata_url": sp_entity_id(base, &id),
                    "sign_on_url": login_url(base, &id),
                    "oidc_redirect_uri": oidc_callback(base, &id),
                },
                "saml": c.as_ref().map(|c| json!({
                    "enabled": c.enabled,
                    "idp_entity_id": c.idp_entity_id,
                    "sso_url": c.sso_url,
                    "certificates": c.certificates.len(),
                    "metadata_url": c.metadata_url,
                    "updated_at": c.updated_at.format(&time::format_description::well_known::Rfc3339).ok(),
                    "scope": c.scope,
                })),
                "group_roles": cx.svc.sso_group_roles(&id).await?,
                "password_sign_in": cx.svc.password_sign_in_status(&id).await?,
                // The client secret is never shown.
                "oidc": o.as_ref().map(|c| json!({
                    "enabled": c.enabled,
                    "issuer": c.issuer,
                    "client_id": c.client_id,
                    "scope": c.scope,
                })),
            });
            if json {
                print_json!(&doc);
            } else {
                outln!("{}", serde_json::to_string_pretty(&doc)?);
            }
            Ok(())
        }
    }
}

async fn current(cx: &Ctx, id: &TenantId) -> Result<Option<SamlIdpConfig>> {
    Ok(cx.svc.saml_config(id).await?)
}

async fn save(cx: &Ctx, c: SamlIdpConfig) -> Result<SamlIdpConfig> {
    Ok(cx
        .svc
        .set_saml_config(Actor::Operator, c, cx.meta.clone())
        .await?)
}
