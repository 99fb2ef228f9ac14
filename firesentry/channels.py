"""Build the notification channels from the configuration (the composition root's job)."""

from __future__ import annotations

import ssl

import aiohttp

from alerts.fire_119 import Fire119Options
from alerts.notify.dingtalk import DingTalkNotifier, DingTalkOptions
from alerts.notify.email import EmailNotifier, EmailOptions
from alerts.notify.feishu import FeishuNotifier, FeishuOptions
from alerts.notify.sms import (
    AliyunSms,
    AliyunSmsOptions,
    GenericHttpSms,
    GenericSmsOptions,
    SmsNotifier,
    SmsProvider,
    TwilioSms,
    TwilioSmsOptions,
)
from alerts.notify.webhook import WebhookNotifier, WebhookTarget
from alerts.notify.wecom import WeComNotifier, WeComOptions
from alerts.outbox import Notifier
from firesentry.config import Settings, SmsProviderConfig
from store.outbox import FIRE_119
from supervision.hazard_loop import HazardOptions
from supervision.hazards import load_policy


def _secret(value: object) -> str:
    get = getattr(value, "get_secret_value", None)
    return str(get()) if get is not None else ""


def _sms_provider(name: str, c: SmsProviderConfig, session: aiohttp.ClientSession) -> SmsProvider:
    if c.kind == "generic":
        assert c.url is not None
        token = _secret(c.token) or None
        return GenericHttpSms(GenericSmsOptions(c.url, token, c.timeout_s, name), session)
    if c.kind == "aliyun":
        return AliyunSms(
            AliyunSmsOptions(
                access_key_id=c.access_key_id or "",
                access_key_secret=_secret(c.access_key_secret),
                sign_name=c.sign_name or "",
                template_code=c.template_code or "",
                template_param=c.template_param,
                timeout_s=c.timeout_s,
                name=name,
                **({"endpoint": c.url} if c.url else {}),
            ),
            session,
        )
    return TwilioSms(
        TwilioSmsOptions(
            account_sid=c.account_sid or "",
            auth_token=_secret(c.auth_token),
            from_number=c.from_number,
            status_callback=c.status_callback if c.receipts else None,
            timeout_s=c.timeout_s,
            name=name,
            **({"base_url": c.url} if c.url else {}),
        ),
        session,
    )


def robot_channels(settings: Settings) -> dict[str, str]:
    """Robot name → its channel (wecom, dingtalk, feishu)."""
    return {name: r.kind for name, r in settings.notify.robots.items()}


def build_notifiers(settings: Settings, session: aiohttp.ClientSession) -> dict[str, Notifier]:
    """Every configured channel, keyed by channel name."""
    n = settings.notify
    out: dict[str, Notifier] = {
        "webhook": WebhookNotifier(
            {
                name: WebhookTarget(str(w.url), _secret(w.secret).encode() or None, w.timeout_s)
                for name, w in n.webhooks.items()
            },
            session,
        )
    }
    if n.fire_119 is not None:
        f = n.fire_119
        target = WebhookTarget(str(f.url), _secret(f.secret).encode() or None, f.timeout_s)
        out[FIRE_119] = WebhookNotifier({f.name: target}, session, FIRE_119)
    if n.sms:
        out["sms"] = SmsNotifier([_sms_provider(name, c, session) for name, c in n.sms.items()])
    if n.email is not None:
        e = n.email
        ctx = ssl.create_default_context(cafile=str(e.ca_file)) if e.ca_file else None
        out["email"] = EmailNotifier(
            EmailOptions(
                host=e.host,
                sender=e.sender,
                port=e.port,
                username=e.username,
                password=_secret(e.password) or None,
                starttls=e.starttls,
                ssl_context=ctx,
                timeout_s=e.timeout_s,
            )
        )
    for kind in ("wecom", "dingtalk", "feishu"):
        robots = {
            name: (str(r.url), _secret(r.secret) or None)
            for name, r in n.robots.items()
            if r.kind == kind
        }
        if not robots:
            continue
        if kind == "wecom":
            out[kind] = WeComNotifier(WeComOptions(robots), session)
        elif kind == "dingtalk":
            out[kind] = DingTalkNotifier(DingTalkOptions(robots), session)
        else:
            out[kind] = FeishuNotifier(FeishuOptions(robots), session)
    return out


def fire_119_options(settings: Settings, timezone: str) -> Fire119Options:
    """Forwarding to 119 and the verification deadline, from the configuration (times in the
    messages in `timezone`, the routing file's)."""
    n = settings.notify
    f = n.fire_119
    return Fire119Options(
        receiver=f.name if f is not None else None,
        centre=f.centre if f is not None else "",
        verify_within_s=n.verify_within_s,
        forward_unverified=f.forward_unverified if f is not None else False,
        timezone=timezone,
    )


def person_channels(settings: Settings) -> frozenset[str]:
    """The channels to people that have a provider configured (sms, email)."""
    n = settings.notify
    return frozenset(ch for ch, on in (("sms", bool(n.sms)), ("email", n.email is not None)) if on)


def hazard_options(settings: Settings, timezone: str) -> HazardOptions:
    """The hazard loop's policy and the channels its messages may use."""
    return HazardOptions(
        load_policy(settings.supervision.hazard_policy), timezone, person_channels(settings)
    )
