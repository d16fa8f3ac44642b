//! The second sign-in step (`/login/second-factor`: a code from the authenticator app or a
//! recovery code), enrolment during sign-in when the tenant requires it
//! (`/login/enrol`), a user's own enrolment (Settings → Security, `/settings/security`),
//! and the one-time link pages that set a password (`/invite/{token}`).
//!
//! Between the password and the code the browser holds a one-time challenge in an
//! HttpOnly cookie (the store keeps its hash, valid 10 minutes); the forms without a
//! session are protected like the sign-in form (origin check and double-submit token).

use super::csrf::{read_fields, refused, same_origin, tokens_match, CheckedForm, Fields};
use super::session::{cookie, presented_secret, secure, session_cookie, set_cookie, SignedIn};
use super::{render, see_other, Nav, PageError};
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use cairn_core::people::{LinkPurpose, LinkSecret, MIN_PASSWORD_LEN};
use cairn_core::session::{random_hex, SignInError};
use cairn_core::totp::TotpSecret;
use serde::Deserialize;

/// The cookie holding the pending second step's challenge.
pub const CHALLENGE_COOKIE: &str = "cairn_2fa";
/// The double-submit CSRF cookie of forms without a session (as `/login`'s).
const FORM_COOKIE: &str = "cairn_login";

/// The `Set-Cookie` of a new challenge (lives as long as the challenge).
pub fn challenge_cookie(challenge: &LinkSecret, secure: bool) -> header::HeaderValue {
    set_cookie(
        CHALLENGE_COOKIE,
        challenge.expose(),
        LinkPurpose::SecondFactor.lifetime().whole_seconds(),
        secure,
    )
}

/// The QR code of an `otpauth://` URI as an `<img>` source: SVG drawn here (no outside
/// service sees the secret), as a data: URI, which the CSP's `img-src data:` allows.
pub fn qr_data_uri(uri: &str) -> String {
    let svg = match qrcode::QrCode::new(uri.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .build(),
        Err(_) => String::new(),
    };
    format!(
        "data:image/svg+xml;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(svg)
    )
}

#[derive(Deserialize)]
pub struct NextParams {
    next: Option<String>,
}

#[derive(Template)]
#[template(path = "second_factor.html")]
struct CodePage {
    nav: Option<Nav>,
    csrf: String,
    next: String,
    /// Enrolment during sign-in: the QR code and the secret to type in.
    enrol: Option<Enrolment>,
    error: Option<String>,
}

pub struct Enrolment {
    pub qr: String,
    pub secret: String,
}

fn enrolment_of(state: &AppState, email: &str, secret: &TotpSecret) -> Enrolment {
    let issuer = format!("Cairn ({})", host_of(&state.services.public_url));
    Enrolment {
        qr: qr_data_uri(&secret.uri(&issuer, email)),
        secret: secret
            .base32()
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(" "),
    }
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

#[derive(Template)]
#[template(path = "recovery_codes.html")]
struct RecoveryPage {
    nav: Option<Nav>,
    codes: Vec<String>,
    next: String,
}

fn safe_next(next: Option<&str>) -> String {
    super::login::safe_next(next)
}

fn code_page(
    state: &AppState,
    status: StatusCode,
    next: &str,
    enrol: Option<Enrolment>,
    error: Option<String>,
) -> Response {
    let csrf = random_hex();
    let mut res = render(
        status,
        &CodePage {
            nav: None,
            csrf: csrf.clone(),
            next: next.to_owned(),
            enrol,
            error,
        },
    );
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(FORM_COOKIE, &csrf, 3600, secure(&state.services.public_url)),
    );
    res
}

fn presented_challenge(headers: &HeaderMap) -> Option<LinkSecret> {
    cookie(headers, CHALLENGE_COOKIE).and_then(LinkSecret::parse)
}

fn start_again() -> Response {
    see_other("/login?expired=1")
}

pub async fn show_second_factor(
    State(state): State<AppState>,
    Query(p): Query<NextParams>,
    headers: HeaderMap,
) -> Response {
    if presented_challenge(&headers).is_none() {
        return start_again();
    }
    code_page(
        &state,
        StatusCode::OK,
        &safe_next(p.next.as_deref()),
        None,
        None,
    )
}

pub async fn show_enrolment(
    State(state): State<AppState>,
    Query(p): Query<NextParams>,
    headers: HeaderMap,
) -> Response {
    let Some(challenge) = presented_challenge(&headers) else {
        return start_again();
    };
    match state.services.sign_in_enrolment(&challenge).await {
        Ok((email, secret)) => code_page(
            &state,
            StatusCode::OK,
            &safe_next(p.next.as_deref()),
            Some(enrolment_of(&state, &email, &secret)),
            None,
        ),
        Err(SignInError::Failed(e)) => {
            tracing::error!(error = %e, "enrolment page failed");
            PageError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Temporarily unavailable",
                "Try again in a moment.",
            )
            .into_response()
        }
        Err(_) => start_again(),
    }
}

/// The checks of a form without a session: same origin and the double-submit token.
async fn checked_fields(state: &AppState, req: Request) -> Result<(HeaderMap, Fields), Response> {
    let headers = req.headers().clone();
    if !same_origin(&headers, &state.services.public_url) {
        return Err(refused().into_response());
    }
    let fields = read_fields(req).await?;
    let token = cookie(&headers, FORM_COOKIE).unwrap_or("");
    if !fields.get("csrf").is_some_and(|t| tokens_match(t, token)) {
        return Err(refused().into_response());
    }
    Ok((headers, fields))
}

/// The answer to a second step that failed.
fn refused_step(
    state: &AppState,
    e: SignInError,
    next: &str,
    enrol: Option<Enrolment>,
) -> Response {
    match e {
        SignInError::InvalidCredentials => code_page(
            state,
            StatusCode::UNAUTHORIZED,
            next,
            enrol,
            Some("That code is not right, or was already used. Enter the current code from your app.".into()),
        ),
        SignInError::Throttled { retry_after } => {
            let minutes = (retry_after.whole_seconds() + 59) / 60;
            let mut res = code_page(
                state,
                StatusCode::TOO_MANY_REQUESTS,
                next,
                enrol,
                Some(format!(
                    "Too many wrong codes. For your security, sign-in is paused: try again in {} minute{}.",
                    minutes.max(1),
                    if minutes > 1 { "s" } else { "" }
                )),
            );
            if let Ok(v) = retry_after.whole_seconds().to_string().parse() {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
            res
        }
        // Password sign-in turned off between the two steps: the first step decides.
        SignInError::Expired | SignInError::PasswordSignInOff { .. } => start_again(),
        SignInError::Busy { .. } | SignInError::Failed(_) => {
            if let SignInError::Failed(e) = &e {
                tracing::error!(error = %e, "second sign-in step failed");
            }
            code_page(
                state,
                StatusCode::SERVICE_UNAVAILABLE,
                next,
                enrol,
                Some("Signing in is not possible right now. Try again in a moment.".into()),
            )
        }
    }
}

fn signed_in(
    state: &AppState,
    mut res: Response,
    secret: &cairn_core::session::SessionSecret,
) -> Response {
    let sec = secure(&state.services.public_url);
    let h = res.headers_mut();
    h.append(header::SET_COOKIE, session_cookie(secret, sec));
    h.append(header::SET_COOKIE, set_cookie(CHALLENGE_COOKIE, "", 0, sec));
    h.append(header::SET_COOKIE, set_cookie(FORM_COOKIE, "", 0, sec));
    res
}

pub async fn submit_second_factor(State(state): State<AppState>, req: Request) -> Response {
    let client = super::login::client_addr(&state, &req);
    let (headers, fields) = match checked_fields(&state, req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let next = safe_next(fields.get("next"));
    let Some(challenge) = presented_challenge(&headers) else {
        return start_again();
    };
    let code = fields.get("code").unwrap_or("");
    let previous = presented_secret(&headers, &state.services.public_url);
    match state
        .services
        .sign_in_second_factor(&challenge, code, &client, previous.as_ref())
        .await
    {
        Ok((secret, _)) => signed_in(&state, see_other(&next), &secret),
        Err(e) => refused_step(&state, e, &next, None),
    }
}

pub async fn submit_enrolment(State(state): State<AppState>, req: Request) -> Response {
    let client = super::login::client_addr(&state, &req);
    let (headers, fields) = match checked_fields(&state, req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let next = safe_next(fields.get("next"));
    let Some(challenge) = presented_challenge(&headers) else {
        return start_again();
    };
    let code = fields.get("code").unwrap_or("");
    let previous = presented_secret(&headers, &state.services.public_url);
    match state
        .services
        .finish_sign_in_enrolment(&challenge, code, &client, previous.as_ref())
        .await
    {
        Ok((secret, _, codes)) => {
            let page = render(
                StatusCode::OK,
                &RecoveryPage {
                    nav: None,
                    codes,
                    next,
                },
            );
            signed_in(&state, page, &secret)
        }
        Err(e) => {
            let enrol = state
                .services
                .sign_in_enrolment(&challenge)
                .await
                .ok()
                .map(|(email, secret)| enrolment_of(&state, &email, &secret));
            refused_step(&state, e, &next, enrol)
        }
    }
}

// --- Settings → Security: a signed-in user's own second factor ---------------------

#[derive(Template)]
#[template(path = "security.html")]
struct SecurityPage {
    nav: Option<Nav>,
    csrf: String,
    enabled: bool,
    enrol: Option<Enrolment>,
    error: Option<String>,
}

async fn security_page(
    state: &AppState,
    user: &SignedIn,
    error: Option<String>,
) -> Result<SecurityPage, PageError> {
    let nav = user.nav("settings-security");
    let ctx = &user.session.ctx;
    let enabled = state
        .services
        .own_second_factor(ctx)
        .await
        .map_err(|e| PageError::from_error(e, &nav))?;
    let enrol = if enabled {
        None
    } else {
        let secret = state
            .services
            .begin_own_enrolment(ctx)
            .await
            .map_err(|e| PageError::from_error(e, &nav))?;
        Some(enrolment_of(state, ctx.email(), &secret))
    };
    Ok(SecurityPage {
        csrf: nav.csrf.clone(),
        nav: Some(nav),
        enabled,
        enrol,
        error,
    })
}

pub async fn show_security(State(state): State<AppState>, user: SignedIn) -> Response {
    match security_page(&state, &user, None).await {
        Ok(p) => render(StatusCode::OK, &p),
        Err(e) => e.into_response(),
    }
}

pub async fn enrol_totp(State(state): State<AppState>, form: CheckedForm) -> Response {
    let CheckedForm { user, fields } = form;
    let nav = user.nav("settings-security");
    let code = fields.get("code").unwrap_or("");
    match state
        .services
        .confirm_own_enrolment(&user.session.ctx, code)
        .await
    {
        Ok(Some(codes)) => render(
            StatusCode::OK,
            &RecoveryPage {
                nav: Some(nav),
                codes,
                next: "/settings/security".into(),
            },
        ),
        Ok(None) => match security_page(
            &state,
            &user,
            Some("That code is not right. Enter the current code from your app.".into()),
        )
        .await
        {
            Ok(p) => render(StatusCode::UNPROCESSABLE_ENTITY, &p),
            Err(e) => e.into_response(),
        },
        Err(e) => PageError::from_error(e, &nav).into_response(),
    }
}

// --- one-time links that set a password -----------------------------------------------

#[derive(Template)]
#[template(path = "set_password.html")]
struct SetPasswordPage {
    nav: Option<Nav>,
    csrf: String,
    token: String,
    email: String,
    invite: bool,
    min_len: usize,
    error: Option<String>,
}

fn link_gone() -> Response {
    PageError::new(
        StatusCode::GONE,
        "This link is no longer valid",
        "The link was already used, has expired, or was replaced by a newer one. Ask an \
         administrator of your organisation for a new link.",
    )
    .into_response()
}

fn set_password_page(
    state: &AppState,
    status: StatusCode,
    token: &LinkSecret,
    email: String,
    purpose: LinkPurpose,
    error: Option<String>,
) -> Response {
    let csrf = random_hex();
    let mut res = render(
        status,
        &SetPasswordPage {
            nav: None,
            csrf: csrf.clone(),
            token: token.expose().to_owned(),
            email,
            invite: purpose == LinkPurpose::Invite,
            min_len: MIN_PASSWORD_LEN,
            error,
        },
    );
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(FORM_COOKIE, &csrf, 3600, secure(&state.services.public_url)),
    );
    res
}

pub async fn show_link(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let Some(token) = LinkSecret::parse(&token) else {
        return link_gone();
    };
    match state.services.password_link(&token).await {
        Ok(Some((purpose, email))) => {
            set_password_page(&state, StatusCode::OK, &token, email, purpose, None)
        }
        Ok(None) => link_gone(),
        Err(e) => {
            tracing::error!(error = %e, "link lookup failed");
            PageError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Temporarily unavailable",
                "Try again in a moment.",
            )
            .into_response()
        }
    }
}

pub async fn accept_link(
    State(state): State<AppState>,
    Path(token): Path<String>,
    req: Request,
) -> Response {
    let Some(token) = LinkSecret::parse(&token) else {
        return link_gone();
    };
    let (_, fields) = match checked_fields(&state, req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let password = fields.get("password").unwrap_or("").to_owned();
    let again = fields.get("password_again").unwrap_or("");
    let Ok(Some((purpose, email))) = state.services.password_link(&token).await else {
        return link_gone();
    };
    if password != again {
        return set_password_page(
            &state,
            StatusCode::UNPROCESSABLE_ENTITY,
            &token,
            email,
            purpose,
            Some("The two passwords are not the same.".into()),
        );
    }
    match state.services.accept_password_link(&token, password).await {
        Ok(_) => see_other("/login?password_set=1"),
        Err(cairn_core::Error::Invalid { reason, .. }) => set_password_page(
            &state,
            StatusCode::UNPROCESSABLE_ENTITY,
            &token,
            email,
            purpose,
            Some(format!("The password {reason}.")),
        ),
        Err(cairn_core::Error::NotFound(_)) => link_gone(),
        Err(e) => {
            tracing::error!(error = %e, "setting a password failed");
            PageError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Temporarily unavailable",
                "Try again in a moment.",
            )
            .into_response()
        }
    }
}
