"""Account pages: sign in and out, sign up, password reset, invitations, profile.

The e-mails already carry these addresses (``/reset-password?token=``,
``/invitations/accept?token=``, ``/settings/notifications``); they are public pages
(except the profile ones) and every form is CSRF-protected, sign-in included.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from omnify.auth import service as auth_service
from omnify.auth import sessions as browser_sessions
from omnify.auth.deps import Principal, actor_for
from omnify.auth.models import BrowserSession, User
from omnify.auth.router import auth_rate_limit
from omnify.auth.schemas import LoginIn, PasswordChangeIn, PasswordResetIn, PasswordResetRequestIn, RegisterIn
from omnify.core import browser
from omnify.core.deps import SessionDep, SettingsDep, request_meta
from omnify.core.errors import AppError
from omnify.orgs import service as org_service
from omnify.settings import Settings
from omnify.web.deps import MaybeUser, WebUser, csrf_guard, roll_back, safe_next, user_shell
from omnify.web.forms import app_error_fields, form_data, parse
from omnify.web.templating import render

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_guard)])


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def signed_in(url: str, settings: Settings, token: str) -> RedirectResponse:
    response = redirect(url)
    browser.set_cookie(response, settings, browser.cookie_policy(settings).session_name, token,
                       settings.web_session_ttl_seconds)
    return response


@router.get("/")
async def home(request: Request, session: SessionDep, user: MaybeUser) -> Response:
    """Signed in: the organization opened last (or the first one); else the sign-in page."""
    if user is None:
        return redirect("/login")
    orgs = [o for o, _n, _s, _r in await auth_service.memberships(session, user)]
    row = getattr(request.state, "browser_session", None)
    last = row.last_org_id if isinstance(row, BrowserSession) else None
    if last in orgs:
        return redirect(f"/orgs/{last}")
    return redirect(f"/orgs/{orgs[0]}" if orgs else "/settings/profile")


# ---------------------------------------------------------------------------- sign in/out
@router.get("/login")
async def login_page(request: Request, user: MaybeUser, next: str = "/") -> Response:
    if user is not None:
        return redirect(safe_next(next))
    return render(request, "account/login.html", {"next": safe_next(next), "email": "", "error": None})


@router.post("/login", dependencies=[Depends(auth_rate_limit)])
async def login(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    data = await form_data(request)
    target = safe_next(data.get("next"))
    body, _errors = parse(LoginIn, data)
    error = "Enter your e-mail address and password."
    if body is not None:
        try:
            user = await auth_service.authenticate(session, settings, request_meta(request), email=body.email,
                                                   password=body.password)
        except AppError as exc:
            error = exc.detail
            status = exc.status
        else:
            token = await browser_sessions.start(session, settings, user, request_meta(request))
            return signed_in(target, settings, token)
    else:
        status = 422
    return render(request, "account/login.html", {"next": target, "email": data.get("email", ""), "error": error},
                  status=status)


@router.post("/logout")
async def logout(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    await browser_sessions.end(session, browser.session_cookie(request, settings))
    response = redirect("/login?flash=signed-out")
    browser.clear_cookie(response, settings, browser.cookie_policy(settings).session_name)
    return response


# ---------------------------------------------------------------------------- sign up
@router.get("/signup")
async def signup_page(request: Request, user: MaybeUser) -> Response:
    if user is not None:
        return redirect("/")
    return render(request, "account/signup.html", {"values": {}, "errors": {}, "error": None})


@router.post("/signup", dependencies=[Depends(auth_rate_limit)])
async def signup(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    data = await form_data(request)
    body, errors = parse(RegisterIn, data)
    error = None
    if body is not None:
        try:
            user, org = await auth_service.create_account(
                session, settings, request_meta(request), email=body.email, password=body.password,
                name=body.name, organization_name=body.organization_name)
            await session.commit()
        except AppError as exc:
            await roll_back(request, session)
            errors, error = app_error_fields(exc), exc.detail
        else:
            assert org is not None
            token = await browser_sessions.start(session, settings, user, request_meta(request), org_id=org.id)
            return signed_in(f"/orgs/{org.id}", settings, token)
    values = {k: data.get(k, "") for k in ("name", "email", "organization_name")}
    return render(request, "account/signup.html", {"values": values, "errors": errors, "error": error}, status=422)


# ---------------------------------------------------------------------------- passwords
@router.get("/forgot-password")
async def forgot_page(request: Request) -> Response:
    return render(request, "account/forgot.html", {"email": "", "error": None})


@router.post("/forgot-password", dependencies=[Depends(auth_rate_limit)])
async def forgot(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    data = await form_data(request)
    body, _errors = parse(PasswordResetRequestIn, data)
    if body is None:
        return render(request, "account/forgot.html", {"email": data.get("email", ""),
                                                       "error": "Enter a valid e-mail address."}, status=422)
    await auth_service.request_password_reset(session, settings, body.email)
    return redirect("/login?flash=reset-sent")  # the same answer whether or not the account exists


@router.get("/reset-password")
async def reset_page(request: Request, token: str = "") -> Response:
    error = None if token else "This page needs the link from the reset e-mail."
    return render(request, "account/reset.html", {"token": token, "errors": {}, "error": error},
                  headers={"Referrer-Policy": "no-referrer"})


@router.post("/reset-password", dependencies=[Depends(auth_rate_limit)])
async def reset(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    data = await form_data(request)
    body, errors = parse(PasswordResetIn, data)
    error, status = ("Enter a new password.", 422) if body is None else (None, 422)
    if body is not None:
        try:
            await auth_service.reset_password(session, settings, request_meta(request), token=body.token,
                                              new=body.new_password)
        except AppError as exc:
            errors, error, status = app_error_fields(exc), exc.detail, exc.status
            errors = {"new_password": next(iter(errors.values()))} if errors else {}
        else:
            return redirect("/login?flash=password-reset")
    return render(request, "account/reset.html", {"token": data.get("token", ""), "errors": errors, "error": error},
                  status=status, headers={"Referrer-Policy": "no-referrer"})


# ---------------------------------------------------------------------------- invitations
async def _invitation_page(request: Request, session: SessionDep, user: User | None, token: str, *,
                           error: str | None = None, errors: dict[str, str] | None = None,
                           values: dict[str, str] | None = None, status: int = 200) -> Response:
    invitation = None
    try:
        invitation = await org_service.invitation_preview(session, token)
    except AppError as exc:
        error, status = exc.detail, exc.status
    context = {"invitation": invitation, "token": token, "user": user, "error": error, "errors": errors or {},
               "values": values or {}, "next": f"/invitations/accept?token={token}"}
    return render(request, "account/invitation.html", context, status=status,
                  headers={"Referrer-Policy": "no-referrer"})


@router.get("/invitations/accept")
async def invitation_page(request: Request, session: SessionDep, user: MaybeUser, token: str = "") -> Response:
    return await _invitation_page(request, session, user, token)


@router.post("/invitations/accept")
async def accept_invitation(request: Request, session: SessionDep, user: WebUser) -> Response:
    token = (await form_data(request)).get("token", "")
    try:
        membership = await org_service.accept_invitation(session, user, actor_for(request, Principal(user=user)),
                                                         token)
    except AppError as exc:
        await roll_back(request, session, user)
        return await _invitation_page(request, session, user, token, error=exc.detail, status=exc.status)
    return redirect(f"/orgs/{membership.org_id}?flash=invitation-accepted")


@router.post("/invitations/signup", dependencies=[Depends(auth_rate_limit)])
async def invitation_signup(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """A new user joins by invitation: an account without an organization of its own."""
    data = await form_data(request)
    token = data.get("token", "")
    values = {"name": data.get("name", "")}
    try:
        preview = await org_service.invitation_preview(session, token)
        body, errors = parse(RegisterIn, {**data, "email": preview.email, "organization_name": "-"})
        if body is None:
            return await _invitation_page(request, session, None, token, errors=errors, values=values,
                                          error="Check the highlighted fields.", status=422)
        user, _org = await auth_service.create_account(session, settings, request_meta(request), email=preview.email,
                                                       password=body.password, name=body.name, organization_name=None)
        membership = await org_service.accept_invitation(session, user, actor_for(request, Principal(user=user)),
                                                         token)
    except AppError as exc:
        await roll_back(request, session)
        return await _invitation_page(request, session, None, token, errors=app_error_fields(exc), values=values,
                                      error=exc.detail, status=exc.status)
    token_value = await browser_sessions.start(session, settings, user, request_meta(request),
                                               org_id=membership.org_id)
    return signed_in(f"/orgs/{membership.org_id}?flash=invitation-accepted", settings, token_value)


# ---------------------------------------------------------------------------- profile
@router.get("/settings/profile")
async def profile_page(request: Request, session: SessionDep, user: WebUser) -> Response:
    web = await user_shell(session, user, "profile")
    return render(request, "account/profile.html", {"web": web, "errors": {}, "error": None,
                                                    "values": {"name": user.name}})


@router.post("/settings/profile")
async def save_profile(request: Request, session: SessionDep, user: WebUser) -> Response:
    data = await form_data(request)
    name = " ".join(data.get("name", "").split())
    if not name or len(name) > 200:
        web = await user_shell(session, user, "profile")
        return render(request, "account/profile.html", {"web": web, "errors": {"name": "Enter your name."},
                                                        "error": None, "values": data}, status=422)
    await auth_service.update_profile(session, user, name=name)
    return redirect("/settings/profile?flash=profile-saved")


@router.post("/settings/password")
async def change_password(request: Request, session: SessionDep, settings: SettingsDep, user: WebUser) -> Response:
    data = await form_data(request)
    body, errors = parse(PasswordChangeIn, data)
    error = "Fill in both passwords." if body is None else None
    if body is not None:
        actor = actor_for(request, Principal(user=user))
        try:
            await auth_service.change_password(session, settings, user, actor, current=body.current_password,
                                               new=body.new_password)
        except AppError as exc:
            error = exc.detail
            errors = {"current_password" if exc.code == "invalid-credentials" else "new_password": exc.detail}
        else:
            token = await browser_sessions.start(session, settings, user, actor)  # this browser stays in
            return signed_in("/settings/profile?flash=password-changed", settings, token)
    web = await user_shell(session, user, "profile")
    return render(request, "account/profile.html", {"web": web, "errors": errors, "error": error,
                                                    "values": {"name": user.name}}, status=422)


@router.get("/settings/notifications")
async def notifications_page(request: Request, session: SessionDep, user: WebUser) -> Response:
    web = await user_shell(session, user, "notifications")
    return render(request, "account/notifications.html", {"web": web})


@router.post("/settings/notifications")
async def save_notifications(request: Request, session: SessionDep, user: WebUser) -> Response:
    data = await form_data(request)
    await auth_service.update_profile(session, user, email_opt_out_digest=data.get("weekly_digest") != "on")
    return redirect("/settings/notifications?flash=preferences-saved")

