"""Slack and Teams alerts: connect, pick channels, route event kinds, deliver, act on buttons.

Delivery is the webhooks engine's (a chat channel is a webhook endpoint of a chat kind):
:func:`on_event` fans each routed domain event out to its channels' endpoints in the
dispatcher's transaction, idempotent on the event id. A Slack button click
(:func:`handle_interaction`) is verified with the app's signing secret and timestamp,
mapped to the Omnify user who linked that Slack user, and carried out with that user's
role through the same services as the web app; the click's ``action_ts`` is its
Idempotency-Key, so a click Slack delivers twice acts once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

from sqlalchemy.ext.asyncio import AsyncSession

from omnify.actions import idempotency
from omnify.actions import service as actions
from omnify.audit import service as audit
from omnify.auth import repository as auth_repo
from omnify.auth.permissions import Permission, role_allows
from omnify.chat import repository, slack
from omnify.chat.models import ChatChannel, ChatConnection, ChatKind, ChatRoute, ChatUserLink, EventKind
from omnify.chat.render import APPLY, DISMISS
from omnify.clients import service as clients
from omnify.core.context import Actor
from omnify.core.db import bind_tenant
from omnify.core.errors import AppError, BadRequest, Conflict, NotFound, Unauthorized, UnprocessableEntity
from omnify.core.logging import get_logger
from omnify.core.pagination import PageParams
from omnify.core.security import InvalidToken, create_link_token, read_link_token
from omnify.orgs import service as orgs
from omnify.recommendations import service as recommendations
from omnify.settings import Settings
from omnify.webhooks import keys
from omnify.webhooks import service as webhooks
from omnify.webhooks.config import WebhookConfig
from omnify.webhooks.models import WebhookDelivery, WebhookEndpoint
from omnify.webhooks.ssrf import BlockedDestination, parse_url

log = get_logger(__name__)

CONNECTION_SECRET = "chat-connection-secret"
OAUTH_STATE = "slack-oauth"
MAX_CHANNELS_PER_ORG = 100

#: domain event type -> event kind a route names (recommendation.created splits on module).
EVENT_KINDS = {"rule.fired": EventKind.RULE_FIRED, "sync.failed": EventKind.SYNC_FAILED,
               "connection.failed": EventKind.CONNECTION_LOST, "guardrail.hit": EventKind.GUARDRAIL_HIT}
PLATFORM_KINDS = {"slack": (ChatKind.SLACK_APP.value, ChatKind.SLACK_WEBHOOK.value),
                  "teams": (ChatKind.TEAMS_WEBHOOK.value,)}


def event_kind(event_type: str, payload: dict[str, Any]) -> EventKind | None:
    if event_type == "recommendation.created":
        module, kind = str(payload.get("module") or ""), str(payload.get("kind") or "")
        if module == "rules" and not kind.startswith("rule_recommend"):
            return None  # a rule's own applied change: announced as rule.fired instead
        return EventKind.ANOMALY if module == "anomaly" else EventKind.RECOMMENDATION_CREATED
    return EVENT_KINDS.get(event_type)


def _redacted(url: str) -> str:
    head = url.split("?", 1)[0]
    return (head[: max(24, len(head) // 3)] + "…") if len(head) > 24 else head


def _config(settings: Settings) -> WebhookConfig:
    return WebhookConfig.from_settings(settings)


# --------------------------------------------------------------------------- connections
async def list_connections(session: AsyncSession, org_id: uuid.UUID) -> Sequence[ChatConnection]:
    return await repository.connections(session, org_id)


async def get_connection(session: AsyncSession, org_id: uuid.UUID, connection_id: uuid.UUID) -> ChatConnection:
    row = await repository.connection(session, org_id, connection_id)
    if row is None:
        raise NotFound("Chat connection not found.")
    return row


async def _channel_count(session: AsyncSession, org_id: uuid.UUID) -> None:
    if len(await repository.channels(session, org_id)) >= MAX_CHANNELS_PER_ORG:
        raise Conflict(f"An organization can have at most {MAX_CHANNELS_PER_ORG} chat channels.",
                       code="chat-channel-limit")


async def _new_channel(session: AsyncSession, settings: Settings, org_id: uuid.UUID, conn: ChatConnection,
                       secret: str, *, channel_ref: str, name: str, shown_url: str,
                       options: dict[str, Any] | None = None) -> ChatChannel:
    endpoint_id = uuid.uuid4()
    endpoint = WebhookEndpoint(
        id=endpoint_id, org_id=org_id, kind=conn.kind, options=options, url=shown_url,
        description=f"{conn.name}: {name}"[:500], event_types=[], enabled=True,
        secret_blob=await keys.seal(settings, keys.ENDPOINT_SECRET, org_id, endpoint_id, secret),
        secret_hint=_redacted(shown_url)[:20])
    repository.add(session, endpoint)
    await session.flush()  # the channel's foreign key needs the endpoint row first
    channel = ChatChannel(id=uuid.uuid4(), org_id=org_id, connection_id=conn.id, endpoint_id=endpoint_id,
                          kind=conn.kind, channel_ref=channel_ref, name=name)
    repository.add(session, channel)
    await session.flush()
    return channel


async def connect_webhook(session: AsyncSession, settings: Settings, org_id: uuid.UUID, actor: Actor, *,
                          kind: ChatKind, name: str, url: str) -> tuple[ChatConnection, ChatChannel]:
    """A Slack incoming webhook or a Teams webhook/workflow URL: one connection, one channel."""
    if kind == ChatKind.SLACK_APP:
        raise UnprocessableEntity("A Slack app is connected with OAuth, not a URL.", errors=[{
            "loc": ["body", "kind"], "field": "kind", "msg": "use slack_webhook or teams_webhook", "type": "enum"}])
    try:
        parse_url(url.strip(), _config(settings))
    except BlockedDestination as exc:
        raise UnprocessableEntity(exc.reason, code="invalid-webhook-url", errors=[{
            "loc": ["body", "url"], "field": "url", "msg": exc.reason, "type": "webhook_url"}]) from None
    await _channel_count(session, org_id)
    url = url.strip()
    conn_id = uuid.uuid4()
    conn = ChatConnection(id=conn_id, org_id=org_id, kind=kind.value, name=name,
                          secret_blob=await keys.seal(settings, CONNECTION_SECRET, org_id, conn_id, url),
                          secret_hint=_redacted(url)[:80], installed_by_id=_user_id(actor))
    repository.add(session, conn)
    await session.flush()
    channel = await _new_channel(session, settings, org_id, conn, url, channel_ref="webhook", name=name,
                                 shown_url=_redacted(url))
    await audit.record(session, org_id, actor, "chat_connection.created", target_type="chat_connection",
                       target_id=conn_id, changes={"kind": kind.value, "name": name, "url": _redacted(url)})
    await session.commit()
    return conn, channel


def _user_id(actor: Actor) -> uuid.UUID | None:
    try:
        return uuid.UUID(actor.actor_id) if actor.actor_type == "user" and actor.actor_id else None
    except ValueError:
        return None


async def delete_connection(session: AsyncSession, org_id: uuid.UUID, actor: Actor, connection_id: uuid.UUID) -> None:
    conn = await get_connection(session, org_id, connection_id)
    for channel in await repository.channels(session, org_id, conn.id):
        await _drop_channel(session, org_id, channel)
    if not await repository.delete(session, conn):
        raise NotFound("Chat connection not found.")
    await audit.record(session, org_id, actor, "chat_connection.deleted", target_type="chat_connection",
                       target_id=connection_id, changes={"kind": conn.kind, "name": conn.name})
    await session.commit()


async def _drop_channel(session: AsyncSession, org_id: uuid.UUID, channel: ChatChannel) -> None:
    endpoint = await webhooks.get_endpoint_of_kind(session, org_id, channel.endpoint_id, channel.kind)
    if not await repository.delete(session, channel):
        raise NotFound("Chat channel not found.")
    if endpoint is not None:
        await repository.delete_endpoint(session, endpoint)
    await session.flush()


# ------------------------------------------------------------------------------ Slack app
def slack_redirect_uri(settings: Settings) -> str:
    return f"{settings.public_base_url}/api/v1/chat/slack/callback"


def slack_authorize_url(settings: Settings, org_id: uuid.UUID, user_id: uuid.UUID) -> str:
    """Where to send the browser: Slack's consent screen, with a signed state (10 minutes)."""
    client_id, _ = slack.require_app(settings)
    state = create_link_token(settings, OAUTH_STATE, {"org": str(org_id), "user": str(user_id)}, 600)
    query = urlencode({"client_id": client_id, "scope": ",".join(slack.BOT_SCOPES), "state": state,
                       "redirect_uri": slack_redirect_uri(settings)})
    return f"{settings.slack_authorize_url}?{query}"


async def complete_slack_install(session: AsyncSession, settings: Settings, code: str, state: str,
                                 ) -> ChatConnection:
    """Slack's redirect back: exchange the code, keep the bot token sealed, link the installer."""
    try:
        claims = read_link_token(settings, OAUTH_STATE, state)
        org_id, user_id = uuid.UUID(claims["org"]), uuid.UUID(claims["user"])
    except (InvalidToken, KeyError, ValueError):
        raise BadRequest("The Slack authorization is invalid or expired; start again.", code="invalid-state") from None
    await bind_tenant(session, org_id)
    role = await orgs.role_of(session, org_id, user_id)
    if role is None or not role_allows(role, Permission.WEBHOOKS_MANAGE):
        raise NotFound("Organization not found.")
    user = await auth_repo.get_user(session, user_id)
    assert user is not None
    install = await slack.exchange_code(settings, code, slack_redirect_uri(settings))
    conn = await repository.slack_workspace(session, org_id, install.team_id)
    fresh = conn is None
    if conn is None:
        conn = ChatConnection(id=uuid.uuid4(), org_id=org_id, kind=ChatKind.SLACK_APP.value,
                              name=f"Slack: {install.team_name}", secret_blob=b"", secret_hint="xoxb-…",
                              slack_team_id=install.team_id, slack_team_name=install.team_name,
                              installed_by_id=user_id)
        repository.add(session, conn)
    conn.secret_blob = await keys.seal(settings, CONNECTION_SECRET, org_id, conn.id, install.bot_token)
    conn.slack_bot_user_id, conn.slack_team_name = install.bot_user_id, install.team_name
    for channel in await repository.channels(session, org_id, conn.id):  # a reinstall rotates the token
        endpoint = await webhooks.get_endpoint_of_kind(session, org_id, channel.endpoint_id, channel.kind)
        if endpoint is not None:
            endpoint.secret_blob = await keys.seal(settings, keys.ENDPOINT_SECRET, org_id, endpoint.id,
                                                   install.bot_token)
    if install.authed_user_id and await repository.user_link(session, org_id, install.team_id,
                                                             install.authed_user_id) is None:
        repository.add(session, ChatUserLink(org_id=org_id, slack_team_id=install.team_id,
                                             slack_user_id=install.authed_user_id, user_id=user_id))
    actor = Actor(actor_type="user", actor_id=str(user_id), label=user.email)
    await audit.record(session, org_id, actor, "chat_connection.slack_installed" if fresh else
                       "chat_connection.slack_reinstalled", target_type="chat_connection", target_id=conn.id,
                       changes={"team_id": install.team_id, "team_name": install.team_name,
                                "linked_slack_user": install.authed_user_id})
    await session.commit()
    return conn


async def slack_channels(session: AsyncSession, settings: Settings, org_id: uuid.UUID,
                         connection_id: uuid.UUID) -> list[dict[str, Any]]:
    conn = await get_connection(session, org_id, connection_id)
    if conn.kind != ChatKind.SLACK_APP.value:
        raise Conflict("Only a Slack app connection lists channels.", code="not-a-slack-app")
    token = await keys.unseal(settings, CONNECTION_SECRET, org_id, conn.id, conn.secret_blob)
    return await slack.list_channels(settings, token)


async def add_slack_channel(session: AsyncSession, settings: Settings, org_id: uuid.UUID, actor: Actor,
                            connection_id: uuid.UUID, channel_id: str) -> ChatChannel:
    conn = await get_connection(session, org_id, connection_id)
    if conn.kind != ChatKind.SLACK_APP.value:
        raise Conflict("Channels are picked on a Slack app connection.", code="not-a-slack-app")
    token = await keys.unseal(settings, CONNECTION_SECRET, org_id, conn.id, conn.secret_blob)
    found = {c["id"]: c for c in await slack.list_channels(settings, token)}
    if channel_id not in found:
        raise UnprocessableEntity("The bot cannot see that channel; invite it or pick another.", errors=[{
            "loc": ["body", "channel_id"], "field": "channel_id", "msg": "unknown channel", "type": "not_found"}])
    for existing in await repository.channels(session, org_id, conn.id):
        if existing.channel_ref == channel_id:
            return existing
    await _channel_count(session, org_id)
    name = f"#{found[channel_id]['name']}"
    channel = await _new_channel(session, settings, org_id, conn, token, channel_ref=channel_id, name=name,
                                 shown_url=f"slack://{conn.slack_team_id}/{channel_id}",
                                 options={"channel": channel_id, "team": conn.slack_team_id})
    await audit.record(session, org_id, actor, "chat_channel.added", target_type="chat_channel",
                       target_id=channel.id, changes={"connection_id": str(conn.id), "channel": name})
    await session.commit()
    return channel


# -------------------------------------------------------------------------------- channels
async def list_channels(session: AsyncSession, org_id: uuid.UUID) -> Sequence[ChatChannel]:
    return await repository.channels(session, org_id)


async def get_channel(session: AsyncSession, org_id: uuid.UUID, channel_id: uuid.UUID) -> ChatChannel:
    row = await repository.channel(session, org_id, channel_id)
    if row is None:
        raise NotFound("Chat channel not found.")
    return row


async def remove_channel(session: AsyncSession, org_id: uuid.UUID, actor: Actor, channel_id: uuid.UUID) -> None:
    channel = await get_channel(session, org_id, channel_id)
    await _drop_channel(session, org_id, channel)
    await audit.record(session, org_id, actor, "chat_channel.removed", target_type="chat_channel",
                       target_id=channel_id, changes={"name": channel.name})
    await session.commit()


async def send_test(session: AsyncSession, org_id: uuid.UUID, actor: Actor, channel_id: uuid.UUID,
                    idempotency_key: str | None) -> WebhookDelivery:
    channel = await get_channel(session, org_id, channel_id)
    return await webhooks.send_test_event(session, org_id, actor, channel.endpoint_id, idempotency_key,
                                          kind=channel.kind)


async def deliveries(session: AsyncSession, org_id: uuid.UUID, channel_id: uuid.UUID, params: PageParams,
                     status: str | None) -> Sequence[WebhookDelivery]:
    channel = await get_channel(session, org_id, channel_id)
    return await webhooks.list_deliveries(session, org_id, channel.endpoint_id, params, status, None,
                                          kind=channel.kind)


async def replay(session: AsyncSession, org_id: uuid.UUID, actor: Actor, channel_id: uuid.UUID,
                 delivery_id: uuid.UUID) -> WebhookDelivery:
    channel = await get_channel(session, org_id, channel_id)
    return await webhooks.replay_delivery(session, org_id, actor, channel.endpoint_id, delivery_id,
                                          kind=channel.kind)


# ---------------------------------------------------------------------------------- routes
async def list_routes(session: AsyncSession, org_id: uuid.UUID) -> Sequence[ChatRoute]:
    return await repository.routes(session, org_id)


async def add_route(session: AsyncSession, org_id: uuid.UUID, actor: Actor, *, channel_id: uuid.UUID,
                    event_kind: EventKind, client_id: uuid.UUID | None) -> ChatRoute:
    channel = await repository.channel(session, org_id, channel_id)
    if channel is None:
        raise UnprocessableEntity("No such channel.", errors=[{"loc": ["body", "channel_id"], "field": "channel_id",
                                                               "msg": "no such channel in this organization",
                                                               "type": "not_found"}])
    if client_id is not None:
        try:
            await clients.get_live_client(session, org_id, client_id)
        except NotFound:
            raise UnprocessableEntity("No such client.", errors=[{
                "loc": ["body", "client_id"], "field": "client_id", "msg": "no such client in this organization",
                "type": "not_found"}]) from None
    key = str(client_id) if client_id else repository.ALL_CLIENTS
    for existing in await repository.routes(session, org_id):
        if (existing.channel_id, existing.event_kind, existing.client_key) == (channel.id, event_kind.value, key):
            return existing
    route = ChatRoute(id=uuid.uuid4(), org_id=org_id, channel_id=channel.id, event_kind=event_kind.value,
                      client_id=client_id, client_key=key)
    repository.add(session, route)
    await session.flush()
    await audit.record(session, org_id, actor, "chat_route.added", target_type="chat_route", target_id=route.id,
                       changes={"channel": channel.name, "event_kind": event_kind.value, "client_id": key})
    await session.commit()
    return route


async def remove_route(session: AsyncSession, org_id: uuid.UUID, actor: Actor, route_id: uuid.UUID) -> None:
    route = await repository.route(session, org_id, route_id)
    if route is None:
        raise NotFound("Route not found.")
    if not await repository.delete(session, route):
        raise NotFound("Route not found.")
    await audit.record(session, org_id, actor, "chat_route.removed", target_type="chat_route", target_id=route_id,
                       changes={"event_kind": route.event_kind, "client_id": route.client_key})
    await session.commit()


# --------------------------------------------------------------------- outbox consumption
async def on_event(session: AsyncSession, settings: Settings, org_id: uuid.UUID, event_id: uuid.UUID,
                   event_type: str, payload: dict[str, Any], occurred_at: datetime) -> int:
    """Queue the event for every channel routed to its kind (and client); idempotent on the event."""
    kind = event_kind(event_type, payload)
    if kind is None:
        return 0
    client_id = str(payload.get("client_id") or "") or None
    channel_ids = {r.channel_id for r in await repository.matching_routes(session, org_id, kind.value, client_id)}
    channels = [c for c in await repository.channels(session, org_id) if c.id in channel_ids]
    if event_type == "rule.fired":  # a rule's notify action names platforms; unrouted ones go to every channel
        for platform in payload.get("notify") or []:
            kinds = PLATFORM_KINDS.get(str(platform), ())
            if kinds and not any(c.kind in kinds for c in channels):
                channels += list(await repository.channels(session, org_id, kinds=kinds))
    endpoints = await repository.endpoints_of(session, org_id, sorted({c.endpoint_id for c in channels}))
    queued = 0
    for endpoint in endpoints:
        queued += len(await webhooks.fan_out(session, org_id, event_type, payload, event_id=event_id,
                                             occurred_at=occurred_at, only_endpoint=endpoint))
    return queued


async def chart_png(session: AsyncSession, settings: Settings, token: str, event_id: uuid.UUID) -> bytes:
    """The chart of one alert, for a signed link (Slack and Teams fetch it without a session)."""
    from omnify.chat.charts import LINK_TYPE, line_chart_png

    try:
        claims = read_link_token(settings, LINK_TYPE, token)
        org_id = uuid.UUID(claims["org"])
        if claims.get("event") != str(event_id):
            raise InvalidToken("link invalid")
    except (InvalidToken, KeyError, ValueError):
        raise NotFound("Chart not found.") from None
    await bind_tenant(session, org_id)
    envelope = await webhooks.event_payload(session, org_id, event_id)
    series = ((envelope or {}).get("data") or {}).get("series") or {}
    if not series.get("dates"):
        raise NotFound("Chart not found.")
    data = envelope["data"] if envelope else {}
    return line_chart_png(list(series["dates"]), {"Spend": [float(v) for v in series.get("spend") or []]},
                          title=f"Daily spend of the items “{data.get('rule_name')}” acted on",
                          ylabel=str(series.get("currency") or ""))


# --------------------------------------------------------------------------- interactions
@dataclass(frozen=True, slots=True)
class InteractionReply:
    text: str

    def body(self) -> dict[str, Any]:
        return {"response_type": "ephemeral", "replace_original": False, "text": self.text}


async def handle_interaction(session: AsyncSession, settings: Settings, body: bytes, timestamp: str | None,
                             signature: str | None) -> InteractionReply:
    """An Apply/Dismiss click from Slack: verified, as the linked user, once per click."""
    if not slack.verify_request(settings, body, timestamp, signature):
        raise Unauthorized("The Slack signature is missing, wrong or too old.", code="invalid-slack-signature")
    try:
        payload = json.loads(parse_qs(body.decode("utf-8"))["payload"][0])
        action = payload["actions"][0]
        value = json.loads(action["value"])
        org_id, rec_id = uuid.UUID(value["org"]), uuid.UUID(value["rec"])
        team_id, slack_user = str(payload["team"]["id"]), str(payload["user"]["id"])
        action_id, action_ts = str(action["action_id"]), str(action.get("action_ts") or payload.get("trigger_id"))
    except (KeyError, IndexError, ValueError, TypeError, UnicodeDecodeError):
        raise BadRequest("Not a Slack block action Omnify sent.", code="invalid-interaction") from None
    if action_id not in (APPLY, DISMISS):
        raise BadRequest("Unknown action.", code="invalid-interaction")
    await bind_tenant(session, org_id)
    link = await repository.user_link(session, org_id, team_id, slack_user)
    if link is None:
        return InteractionReply("Link your Slack account to Omnify first (Settings → Alerts → Link my Slack "
                                "account); nothing was done.")
    user = await auth_repo.get_user(session, link.user_id)
    role = await orgs.role_of(session, org_id, link.user_id)
    if user is None or not user.is_active or role is None:
        return InteractionReply("Your Omnify account is not a member of this organization; nothing was done.")
    if not role_allows(role, Permission.ACTIONS_APPLY):
        return InteractionReply(f"Your role ({role.value}) cannot apply or dismiss recommendations; nothing was done.")
    actor = Actor(actor_type="user", actor_id=str(user.id), label=user.email, request_id=f"slack:{action_ts}")
    key = f"slack:{team_id}:{action_ts}:{action_id}:{rec_id}"[:255]
    fp = idempotency.fingerprint("POST", "/chat/slack/interactions", {"rec": str(rec_id)}, {"action": action_id})
    claimed = await idempotency.begin(session, org_id, str(user.id), key, fp)
    if isinstance(claimed, idempotency.Replay):  # Slack delivered the same click again
        return InteractionReply(f"Already done: {claimed.body.get('summary') or claimed.body.get('text') or 'ok'}")
    try:
        if action_id == APPLY:
            # The key's answer commits with the action (actions.apply completes it).
            outcome = await actions.apply(session, settings, org_id, actions.Caller(role, actor), rec_id,
                                          note="from Slack", idem=claimed)
            text = (f"Applied by {user.email}: {outcome.action.summary}" if outcome.status_code == 200 else
                    f"Waiting for an admin's approval: {outcome.action.summary}")
        else:
            text = f"Dismissed by {user.email}."
            idempotency.complete(claimed, 200, {"text": text})
            await recommendations.dismiss(session, org_id, actor, rec_id, "Dismissed from Slack")
    except AppError as exc:
        await idempotency.release(session, claimed)
        return InteractionReply(f"Nothing was done: {exc.detail}")
    log.info("chat.slack_interaction", action=action_id, org_id=str(org_id), user_id=str(user.id))
    return InteractionReply(text)

