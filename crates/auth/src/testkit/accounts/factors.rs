//! Second-factor cases of the user-store contract: TOTP enrollment, login and replay, and
//! guesses at one account from many addresses.

use super::*;

/// TOTP: enrollment needs the password and takes effect once confirmed; then a login needs a
/// fresh code and carries `amr` ["pwd","otp"]; a code is accepted once, also when sent by
/// several logins at once; turning the factor off needs a fresh code.
pub async fn totp_enrollment_login_and_replay(backend: &dyn Backend) {
    let clock = Arc::new(ManualClock::default());
    let (a, audit) = accounts_on(backend, Duration::ZERO, clock.clone()).await;
    let a = Arc::new(a);
    let id = a.register(registration(EMAIL), &ctx()).await.unwrap();
    assert!(
        matches!(
            a.totp_enroll(id, "not the password", &ctx()).await,
            Err(AuthError::InvalidCredentials)
        ),
        "an access token alone cannot enroll a factor"
    );
    let enrollment = a.totp_enroll(id, PASSWORD, &ctx()).await.unwrap();
    assert!(format!("{enrollment:?}").contains("REDACTED"));
    assert!(enrollment.otpauth_uri.contains(enrollment.secret.as_str()));
    assert!(
        !enrollment.otpauth_uri.contains("example"),
        "no email in the URI"
    );
    let secret = decode_base32(&enrollment.secret);
    // Codes are computed here and checked by the service a moment later: start well inside a
    // step so both see the same one (the service's clock is the test's, and it stands still).
    let step = crate::mfa::STEP_SECS;
    let in_step = clock.unix_secs() % step;
    if in_step > step - 8 {
        clock.advance(Duration::from_secs(step - in_step + 1));
    }
    let now = clock.unix_secs();
    let (previous, current, next) = (
        secret.code_at(now - step),
        secret.code_at(now),
        secret.code_at(now + step),
    );
    // A code that is not the current one (each digit moved by one).
    let wrong: String = current
        .bytes()
        .map(|b| char::from(b'0' + (b - b'0' + 1) % 10))
        .collect();
    // Not confirmed yet: the password alone still logs in.
    assert!(a.login(credentials(EMAIL), &ctx()).await.is_ok());
    assert!(matches!(
        a.totp_confirm(id, &wrong, &ctx()).await,
        Err(AuthError::InvalidCredentials)
    ));
    // Confirm with the previous step's code, so the current one is still fresh for the login.
    a.totp_confirm(id, &previous, &ctx()).await.unwrap();
    assert!(a.profile(id).await.unwrap().mfa_enabled);
    assert!(matches!(
        a.totp_enroll(id, PASSWORD, &ctx()).await,
        Err(AuthError::MfaState(_))
    ));

    assert!(matches!(
        a.login(credentials(EMAIL), &ctx()).await,
        Err(AuthError::MfaRequired)
    ));
    let wrong_password = Credentials {
        password: "wrong password here",
        ..with_code(&current)
    };
    assert!(
        matches!(
            a.login(wrong_password, &ctx()).await,
            Err(AuthError::InvalidCredentials)
        ),
        "a wrong password never reveals that a code is needed"
    );
    assert!(matches!(
        a.login(with_code("12345x"), &ctx()).await,
        Err(AuthError::InvalidCredentials)
    ));
    assert!(matches!(
        a.login(with_code(&wrong), &ctx()).await,
        Err(AuthError::InvalidCredentials)
    ));
    // Four logins with one code at once: one gets in.
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (a, code) = (a.clone(), current.clone());
            tokio::spawn(async move {
                let c = Credentials {
                    totp: Some(&code),
                    ..credentials(EMAIL)
                };
                a.login(c, &RequestContext::default()).await
            })
        })
        .collect();
    let mut sessions = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(s) => sessions.push(s),
            Err(AuthError::InvalidCredentials) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(sessions.len(), 1, "a code is accepted once");
    let s = sessions.pop().unwrap();
    assert_eq!(s.claims.amr, ["pwd", "otp"]);
    let refreshed = a.refresh(s.refresh_token.expose(), &ctx()).await.unwrap();
    assert_eq!(
        refreshed.claims.amr,
        ["pwd", "otp"],
        "kept through rotation"
    );
    assert!(matches!(
        a.login(with_code(&current), &ctx()).await,
        Err(AuthError::InvalidCredentials)
    ));
    let e = events(audit.as_ref()).await;
    assert!(count(&e, Action::UserMfaUpdate) >= 2);
    assert!(e.iter().any(|e| e.action == Action::UserLoginFailed
        && matches!(e.details.get("reason"), Some(DetailValue::Code(c)) if c.as_str() == "bad_otp")));
    // Turning it off needs a fresh code: the one just used is refused, the next step's works.
    assert!(matches!(
        a.totp_disable(id, &current, &ctx()).await,
        Err(AuthError::InvalidCredentials)
    ));
    a.totp_disable(id, &next, &ctx()).await.unwrap();
    assert!(!a.profile(id).await.unwrap().mfa_enabled);
    assert!(a.login(credentials(EMAIL), &ctx()).await.is_ok());
}

/// Guesses at one account from many addresses: six wrong codes are checked, then the account
/// takes no guess for a doubling wait (at most 15 minutes), so a day of guessing checks about a
/// hundred codes of a million. A wrong password at an unknown email gets the same answers as at
/// a known one. The right password alone is audited like a failed login, and so is a refused
/// removal of the factor. The right password and code after the wait log in.
pub async fn guesses_at_one_account_back_off_from_any_address(backend: &dyn Backend) {
    let clock = Arc::new(ManualClock::default());
    let (a, audit) = accounts_on(backend, Duration::ZERO, clock.clone()).await;
    let id = a.register(registration(EMAIL), &ctx()).await.unwrap();
    let enrollment = a.totp_enroll(id, PASSWORD, &ctx()).await.unwrap();
    let secret = decode_base32(&enrollment.secret);
    let code_now = || secret.code_at(clock.unix_secs());
    a.totp_confirm(id, &code_now(), &ctx()).await.unwrap();
    let failed_for = |reason: &'static str| {
        let audit = audit.clone();
        async move {
            events(audit.as_ref())
                .await
                .iter()
                .filter(|e| {
                    e.action == Action::UserLoginFailed
                        && matches!(e.details.get("reason"), Some(DetailValue::Code(c)) if c.as_str() == reason)
                })
                .count()
        }
    };
    assert!(matches!(
        a.login(credentials(EMAIL), &ctx()).await,
        Err(AuthError::MfaRequired)
    ));
    assert_eq!(
        failed_for("mfa_required").await,
        1,
        "the right password alone"
    );

    let from = |i: u8| RequestContext {
        client_ip: Some(std::net::IpAddr::from([198, 51, 100, i])),
        request_id: None,
    };
    // A code that is none of the three accepted now.
    let not_a_code = || {
        let now = clock.unix_secs();
        let step = crate::mfa::STEP_SECS;
        let accepted = [now - step, now, now + step].map(|t| secret.code_at(t));
        (0..4)
            .map(|i| format!("{i}{i}{i}{i}{i}{i}"))
            .find(|c| !accepted.contains(c))
            .unwrap()
    };
    let mut answers = (0, 0);
    for i in 0..200 {
        match a.login(with_code(&not_a_code()), &from(i)).await {
            Err(AuthError::InvalidCredentials) => answers.0 += 1,
            Err(AuthError::TooManyGuesses { retry_after }) => {
                assert!(retry_after >= Duration::from_secs(1));
                answers.1 += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(answers, (6, 194), "six codes checked, then none");
    let start = clock.unix_secs();
    let mut checked = 0;
    while clock.unix_secs() < start + 24 * 3600 {
        match a.login(with_code(&not_a_code()), &from(7)).await {
            Err(AuthError::InvalidCredentials) => checked += 1,
            Err(AuthError::TooManyGuesses { retry_after }) => clock.advance(retry_after),
            other => panic!("{other:?}"),
        }
    }
    assert!(
        checked <= 24 * 4 + 11,
        "{checked} codes checked in a day: one per 15 minutes once the wait is at its longest"
    );

    for email in [EMAIL, "nobody@example.com"] {
        let wrong = Credentials {
            email,
            password: "wrong password here",
            ..credentials(EMAIL)
        };
        let mut codes = Vec::new();
        for i in 0..8 {
            codes.push(a.login(wrong, &from(i)).await.unwrap_err().code());
        }
        assert_eq!(
            codes,
            [["invalid_credentials"; 6].as_slice(), &["rate_limited"; 2]].concat(),
            "{email}"
        );
    }

    let refused = failed_for("bad_otp").await;
    let disabled = loop {
        match a.totp_disable(id, &not_a_code(), &ctx()).await {
            Err(AuthError::TooManyGuesses { retry_after }) => clock.advance(retry_after),
            other => break other,
        }
    };
    assert!(matches!(disabled, Err(AuthError::InvalidCredentials)));
    assert_eq!(
        failed_for("bad_otp").await,
        refused + 1,
        "a refused removal is audited"
    );
    let session = loop {
        match a.login(with_code(&code_now()), &ctx()).await {
            Err(AuthError::TooManyGuesses { retry_after }) => clock.advance(retry_after),
            other => break other.unwrap(),
        }
    };
    assert_eq!(session.claims.amr, ["pwd", "otp"]);
}
