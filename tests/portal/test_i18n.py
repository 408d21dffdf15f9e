"""The portal in Chinese and English (docs/portal.md, "Languages").

The catalog (platform/locale/zh_Hans/LC_MESSAGES/django.po) must be whole and compiled: every entry
translated, none fuzzy, the committed .mo answering each msgid with the .po's msgstr, every string the
templates and the Python mark present. Pages follow Accept-Language and the header's switcher; the API,
Delta Sharing and OAuth's JSON stay English whatever the client asks for.
"""

from __future__ import annotations

import ast
import gettext
import re
from pathlib import Path

import polib
import pytest
from catalog_support import approved, bearer_token
from django.core import mail
from django.template import engines
from django.templatetags.i18n import BlockTranslateNode, TranslateNode
from django.test import Client
from django.utils import translation
from hypothesis import given, settings
from hypothesis import strategies as st
from partner_support import add_member, make_client, make_user

from datasets.spec import Mode
from institutions.models import Role

PLATFORM = Path(__file__).resolve().parents[2] / "platform"
CATALOG = PLATFORM / "locale" / "zh_Hans" / "LC_MESSAGES"
PO = polib.pofile(str(CATALOG / "django.po"))
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|%%|\{\w+\}")
CHINESE = {"HTTP_ACCEPT_LANGUAGE": "zh-Hans"}


# --- the catalog ---------------------------------------------------------------------------


def test_every_entry_is_translated_and_none_is_fuzzy_or_obsolete():
    untranslated = [entry.msgid for entry in PO if not entry.translated()]
    assert untranslated == []
    assert [entry.msgid for entry in PO if "fuzzy" in entry.flags] == []
    assert PO.obsolete_entries() == []
    assert PO.metadata["Plural-Forms"].startswith("nplurals=1;")


def test_every_translation_keeps_the_placeholders_of_its_msgid():
    """A translation that drops %(name)s raises KeyError-free garbage at best, a 500 at worst."""
    for entry in PO:
        translations = entry.msgstr_plural.values() if entry.msgid_plural else [entry.msgstr]
        for text in translations:
            assert sorted(PLACEHOLDER.findall(text)) == sorted(PLACEHOLDER.findall(entry.msgid)), entry.msgid


def test_the_committed_mo_answers_every_msgid_with_the_po_translation():
    with open(CATALOG / "django.mo", "rb") as compiled:
        mo = gettext.GNUTranslations(compiled)
    assert len(polib.mofile(str(CATALOG / "django.mo"))) == len(PO)
    for entry in PO:
        if entry.msgid_plural:
            for count in (1, 2, 5):
                assert mo.ngettext(entry.msgid, entry.msgid_plural, count) == entry.msgstr_plural[0], entry.msgid
        elif entry.msgctxt:
            assert mo.pgettext(entry.msgctxt, entry.msgid) == entry.msgstr, entry.msgid
        else:
            assert mo.gettext(entry.msgid) == entry.msgstr, entry.msgid


def _template_msgids(template) -> set[str]:
    """The msgids Django looks up when it renders this template, built as Django builds them."""
    found = {
        node.filter_expression.var.literal
        for node in template.nodelist.get_nodes_by_type(TranslateNode)
        if not node.noop and node.filter_expression.var.literal is not None
    }
    for node in template.nodelist.get_nodes_by_type(BlockTranslateNode):
        found.add(node.render_token_list(node.singular)[0])
        if node.plural:
            found.add(node.render_token_list(node.plural)[0])
    return found


def _marked_in_templates() -> dict[str, set[str]]:
    engine = engines["django"].engine
    marked = {}
    for path in sorted(PLATFORM.glob("*/templates/**/*")):
        if path.suffix not in (".html", ".txt"):
            continue
        source = path.read_text()
        strings = _template_msgids(engine.from_string(source))
        strings |= set(re.findall(r'_\("([^"]*)"\)', source))  # literals in filter arguments: default:_("never")
        marked[str(path.relative_to(PLATFORM))] = strings
    return marked


def _marked_in_python() -> dict[str, set[str]]:
    calls = {"_", "gettext", "gettext_lazy", "gettext_noop", "ngettext", "ngettext_lazy"}
    marked = {}
    for path in sorted(PLATFORM.glob("*/**/*.py")):
        source = path.read_text()
        if "django.utils.translation" not in source or "/migrations/" in str(path):
            continue
        strings = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in calls | {"pgettext_lazy"}:
                arguments = node.args[1:2] if node.func.id == "pgettext_lazy" else node.args[:2]
                for argument in arguments:
                    if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                        strings.add(argument.value)
        marked[str(path.relative_to(PLATFORM))] = strings
    return marked


def test_every_marked_string_is_in_the_catalog():
    """Run `make messages` when this fails: a string was marked (or changed) and not extracted and translated."""
    in_catalog = {entry.msgid for entry in PO} | {entry.msgid_plural for entry in PO if entry.msgid_plural}
    marked = {**_marked_in_templates(), **_marked_in_python()}
    assert sum(len(strings) for strings in marked.values()) > 400  # the walk found the portal's strings
    missing = {place: sorted(strings - in_catalog) for place, strings in marked.items() if strings - in_catalog}
    assert missing == {}


def test_no_label_placeholder_or_title_attribute_is_left_unmarked():
    """Attributes people read (a screen reader reads aria-label) are text too; `makemessages` cannot see them unmarked."""
    unmarked = {}
    for path in sorted(PLATFORM.glob("*/templates/**/*.html")):
        source = re.sub(r"(?s)\{%\s*blocktranslate.*?\{%\s*endblocktranslate\s*%\}|\{%.*?%\}", "", path.read_text())
        found = re.findall(r'(?:placeholder|aria-label|title|alt)="[^"{]*[A-Za-z]{3,}[^"{]*"', source)
        if found:
            unmarked[str(path.relative_to(PLATFORM))] = found
    assert unmarked == {}


# --- pages ---------------------------------------------------------------------------------

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def chinese(response) -> str:
    assert response.status_code == 200
    page = response.content.decode()
    assert '<html lang="zh-hans">' in page
    assert response["Content-Language"] == "zh-hans"
    return page


def test_the_sign_in_page_answers_in_chinese_and_in_english_by_default():
    page = chinese(Client().get("/accounts/login/", **CHINESE))
    assert "<h1>登录</h1>" in page and "忘记密码？" in page and "电子邮箱" in page
    english = Client().get("/accounts/login/").content.decode()
    assert '<html lang="en">' in english and "<h1>Sign in</h1>" in english and "登录" not in english


def test_a_browser_asking_for_simplified_chinese_by_region_gets_it():
    page = Client().get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9,en;q=0.8").content.decode()
    assert '<html lang="zh-hans">' in page


def test_a_language_the_portal_does_not_speak_falls_back_to_english():
    page = Client().get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="fr-FR,de;q=0.5").content.decode()
    assert '<html lang="en">' in page and "<h1>Sign in</h1>" in page


def test_catalog_dataset_and_subscription_pages_in_chinese(fund, alice, catalog, plan):
    subscription = approved(fund, catalog.cards, plan, [Mode.QUERY])
    client = signed_in(alice)
    listing = chinese(client.get("/catalog/", **CHINESE))
    assert "<h1>数据集目录</h1>" in listing and "工作台" in listing and "审计日志" in listing
    assert ">Workbench<" not in listing and ">Catalog<" not in listing
    dataset = chinese(client.get(f"/catalog/{catalog.cards.slug}/", **CHINESE))
    assert "数据字典" in dataset and "隐私报告" in dataset and "版本历史" in dataset
    assert catalog.cards.title in dataset  # dataset metadata is data: as the spec says it
    detail = chinese(client.get(f"/subscriptions/{subscription.pk}/", **CHINESE))
    assert "访问方式" in detail and "套餐条款" in detail
    listing = chinese(client.get("/subscriptions/", **CHINESE))
    assert "我的机构的订阅" in listing


def test_the_workbench_in_chinese_with_a_result_counted_in_chinese(fund, bob, catalog, plan):
    approved(fund, catalog.industry, plan, [Mode.QUERY])
    client = signed_in(bob)
    page = chinese(client.get("/workbench/", **CHINESE))
    assert "<h1>SQL 工作台" in page and "已保存的查询" in page and "导出完整结果" in page
    result = chinese(
        client.post(
            "/workbench/",
            {"sql": "SELECT csi_industry, SUM(gmv) AS gmv FROM industry_prosperity_monthly GROUP BY 1 ORDER BY 1"},
            **CHINESE,
        )
    )
    rows = re.search(r'id="result-meta">(\d+) 行', result)
    assert rows is not None and int(rows.group(1)) > 0


def test_staff_pages_in_chinese(olga, catalog):
    client = signed_in(olga)
    assert "待处理事项" in chinese(client.get("/staff/", **CHINESE))
    assert "订阅申请" in chinese(client.get("/subscriptions/review/", **CHINESE))
    assert "待审核的入驻申请" in chinese(client.get("/institutions/review/", **CHINESE))
    assert "各机构用量" in chinese(client.get("/staff/usage/", **CHINESE))
    operations = chinese(client.get(f"/staff/datasets/{catalog.cards.slug}/", **CHINESE))
    assert "刷新记录" in operations and "保留（最新 3 个之一）" in operations


def test_page_messages_and_form_errors_in_chinese(fund, alice):
    client = signed_in(alice)
    page = chinese(
        client.post(
            f"/institutions/{fund.pk}/members/",
            {"email": "li.lei@fund.example", "role": Role.ANALYST},
            follow=True,
            **CHINESE,
        )
    )
    assert "邀请已发送至 li.lei@fund.example。" in page
    signup = chinese(
        Client().post(
            "/accounts/signup/",
            {"full_name": "Wang Fang", "email": "w@f.example", "password": "x" * 12, "password_again": "y" * 12},
            **CHINESE,
        )
    )
    assert "两次输入的密码不一致。" in signup and "确认密码" in signup


def test_a_mail_is_written_in_the_language_of_the_page_that_sent_it(alice):
    Client().post("/accounts/password-reset/", {"email": alice.email}, **CHINESE)
    Client().post("/accounts/password-reset/", {"email": alice.email})
    chinese_mail, english_mail = mail.outbox[-2:]
    assert chinese_mail.subject == "[Vitamin] 设置新密码" and "重置您的 Vitamin 账户密码" in chinese_mail.body
    assert english_mail.subject == "[Vitamin] Choose a new password" and "reset the password" in english_mail.body


def test_error_pages_answer_in_the_visitors_language():
    response = Client().get("/no-such-page/", **CHINESE)
    assert response.status_code == 404
    assert "页面不存在" in response.content.decode() and '<html lang="zh-hans">' in response.content.decode()


# --- the switcher --------------------------------------------------------------------------


def test_the_switcher_is_in_the_header_as_a_labelled_post_form(alice):
    page = signed_in(alice).get("/catalog/").content.decode()
    switcher = re.search(r'<form method="post" action="/i18n/setlang/"[^>]*>.*?</form>', page, re.S).group(0)
    assert 'aria-label="Language"' in switcher and "csrfmiddlewaretoken" in switcher
    assert (
        '<button type="submit" class="link" name="language" value="zh-hans" lang="zh-hans">简体中文</button>'
        in switcher
    )
    assert 'value="en"' not in switcher  # the active language is not offered
    assert '<input type="hidden" name="next" value="/catalog/">' in switcher


def test_switching_to_chinese_sticks_over_the_browsers_language_and_back(alice):
    client = signed_in(alice)
    response = client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/workbench/"})
    assert response.status_code == 302 and response["Location"] == "/workbench/"
    chinese(client.get("/catalog/", HTTP_ACCEPT_LANGUAGE="en"))
    client.post("/i18n/setlang/", {"language": "en", "next": "/catalog/"})
    page = client.get("/catalog/", **CHINESE).content.decode()
    assert '<html lang="en">' in page and "<h1>Dataset catalog</h1>" in page


def test_the_switcher_needs_a_csrf_token():
    client = Client(enforce_csrf_checks=True)
    response = client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/catalog/"})
    assert response.status_code == 403
    assert "django_language" not in response.cookies


def test_the_switcher_does_not_redirect_to_another_site():
    response = Client().post("/i18n/setlang/", {"language": "zh-hans", "next": "https://evil.example/phish"})
    assert response.status_code == 302 and "evil.example" not in response["Location"]


def test_the_switcher_ignores_a_language_the_portal_does_not_speak():
    client = Client()
    client.post("/i18n/setlang/", {"language": "fr", "next": "/accounts/login/"})
    assert '<html lang="en">' in client.get("/accounts/login/").content.decode()


# --- the API's contract stays English --------------------------------------------------------


def test_an_api_error_is_english_whatever_the_client_asks_for():
    response = Client().get("/api/v1/datasets", **CHINESE)
    assert response.status_code == 401
    body = response.json()["error"]
    assert body["code"] == "not_authenticated"
    assert body["message"] == "Authentication credentials were not provided."
    assert "Content-Language" not in response and "Accept-Language" not in response.get("Vary", "")


def test_an_api_error_is_english_for_a_client_holding_the_chinese_cookie():
    client = Client()
    client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/"})
    response = client.get("/api/v1/datasets", **CHINESE)
    assert response.json()["error"]["message"] == "Authentication credentials were not provided."
    response = client.get("/api/v1/no-such-route", **CHINESE)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert not re.search(r"[\u4e00-\u9fff]", response.content.decode())


def test_delta_sharing_and_oauth_errors_are_english():
    sharing = Client().get("/delta-sharing/shares", **CHINESE)
    assert sharing.status_code == 401 and not re.search(r"[\u4e00-\u9fff]", sharing.content.decode())
    token = Client().post("/oauth/token", {"grant_type": "password"}, **CHINESE)
    assert token.status_code in (400, 401) and not re.search(r"[\u4e00-\u9fff]", token.content.decode())
    assert "Content-Language" not in token


LANGUAGE_TAG = st.from_regex(r"[a-zA-Z]{1,8}(-[a-zA-Z0-9]{1,8}){0,2}", fullmatch=True)
ACCEPT_LANGUAGE = st.lists(
    st.tuples(
        st.one_of(st.sampled_from(["zh-Hans", "zh-CN", "zh", "zh-TW", "en", "*"]), LANGUAGE_TAG), st.floats(0, 1)
    ),
    min_size=1,
    max_size=4,
).map(lambda tags: ", ".join(f"{tag};q={weight:.1f}" for tag, weight in tags))


@settings(max_examples=40, deadline=None)
@given(accept_language=ACCEPT_LANGUAGE)
def test_no_accept_language_turns_an_api_message_chinese(accept_language):
    response = Client().get("/api/v1/datasets", HTTP_ACCEPT_LANGUAGE=accept_language)
    assert response.json()["error"]["message"] == "Authentication credentials were not provided."


def test_the_oauth_consent_page_is_a_page_and_speaks_the_visitors_language(fund, alice):
    client = signed_in(alice)
    response = client.get("/oauth/authorize?response_type=code&client_id=nobody", **CHINESE)
    assert '<html lang="zh-hans">' in response.content.decode()


def test_a_member_without_a_subscription_sees_the_empty_workbench_in_chinese(fund, catalog):
    viewer = make_user("carol@fund.example")
    add_member(fund, viewer, Role.ANALYST)
    page = chinese(signed_in(viewer).get("/workbench/", **CHINESE))
    assert "您的机构还没有允许查询的订阅。" in page


def test_status_role_and_type_names_in_chinese_and_in_english(fund, alice):
    page = chinese(signed_in(alice).get(f"/institutions/{fund.pk}/", **CHINESE))
    assert '<span class="status status-approved" id="status">已批准</span>' in page
    assert "基金管理公司" in page and "您的角色：所有者" in page
    english = signed_in(alice).get(f"/institutions/{fund.pk}/").content.decode()
    assert '<span class="status status-approved" id="status">Approved</span>' in english


def test_an_api_listing_names_its_choices_in_english(fund, alice, catalog, plan):
    """Choice labels are translatable (gettext_lazy); the API still renders them in English."""
    subscription = approved(fund, catalog.cards, plan, [Mode.QUERY])
    response = Client().get(
        f"/api/v1/subscriptions/{subscription.pk}",
        HTTP_AUTHORIZATION=f"Bearer {bearer_token(fund, user=alice)}",
        **CHINESE,
    )
    assert response.status_code == 200, response.content
    assert not re.search(r"[\u4e00-\u9fff]", response.content.decode())


def test_the_audit_pages_in_chinese(fund, alice, olga):
    trail = chinese(signed_in(alice).get(f"/institutions/{fund.pk}/audit/", **CHINESE))
    assert "<h1>审计日志</h1>" in trail and "校验哈希链" in trail and "操作者类型" in trail
    verified = chinese(signed_in(alice).post(f"/institutions/{fund.pk}/audit/verify/", follow=True, **CHINESE))
    assert "哈希链完整：" in verified
    assert "<h1>审计检索</h1>" in chinese(signed_in(olga).get("/audit/search/", **CHINESE))


def test_the_switchers_choice_is_kept_for_a_year():
    response = Client().post("/i18n/setlang/", {"language": "zh-hans", "next": "/"})
    cookie = response.cookies["django_language"]
    assert cookie.value == "zh-hans" and int(cookie["max-age"]) == 365 * 24 * 3600


def test_the_portals_tier_and_mode_names_are_the_specs_in_english():
    """datasets.spec has no Django, so the portal keeps the translatable copy; the English must stay the same."""
    from access.service import MODE_WORDS
    from catalog.models import TIER_CHOICES
    from datasets.spec import Mode, Tier

    with translation.override("en"):
        assert [(value, str(label)) for value, label in TIER_CHOICES] == [(tier.value, tier.label) for tier in Tier]
        assert {mode: str(label) for mode, label in MODE_WORDS.items()} == {mode: mode.label for mode in Mode}


def test_plan_terms_tiers_modes_and_scopes_in_chinese(fund, alice, catalog, plan):
    client = signed_in(alice)
    dataset = chinese(client.get(f"/catalog/{catalog.industry.slug}/", **CHINESE))
    assert "每日查询次数" in dataset and "在每次查询结束时计数" in dataset and ">开放<" in dataset
    assert "该层级允许的访问方式：SQL 查询, 批量下载（Delta Sharing）。" in dataset
    request = chinese(client.get(f"/catalog/{catalog.industry.slug}/request/", **CHINESE))
    assert "批量下载（Delta Sharing）" in request
    clients = chinese(client.get(f"/institutions/{fund.pk}/clients/", **CHINESE))
    assert "query — 对已订阅的数据集运行 SQL 查询" in clients
    sharing_client, _secret = make_client(fund, name="Index builder")
    profile = chinese(client.get(f"/clients/{sharing_client.client_id}/sharing-profile/", **CHINESE))
    assert "当前密钥在 24 小时内继续有效" in profile


def test_the_api_schema_keeps_the_scopes_in_english():
    schema = Client().get("/api/schema/", **CHINESE)
    assert schema.status_code == 200
    assert "Run SQL queries on subscribed datasets" in schema.content.decode()


def test_amounts_say_their_unit_in_the_active_language():
    from portal.templatetags.units import human

    with translation.override("en"):
        assert (human(0, "bytes"), human(1, "bytes"), human(2048, "bytes"), human(90, "seconds")) == (
            "0 bytes",
            "1 byte",
            "2.0 KB",
            "90 s",
        )
    with translation.override("zh-hans"):
        assert (human(1, "bytes"), human(1000, "bytes"), human(1.5, "seconds")) == ("1 字节", "1,000 字节", "1.5 秒")


def test_refusals_only_pages_make_are_in_chinese(bob, fund, catalog, plan):
    staff_only = signed_in(bob).get("/staff/", **CHINESE)
    assert staff_only.status_code == 403 and "此页面仅供平台工作人员使用" in staff_only.content.decode()
    approved(fund, catalog.industry, plan, [Mode.QUERY])
    empty = signed_in(bob).post("/workbench/", {"sql": "  "}, **CHINESE)
    assert empty.status_code == 400
    assert "请先输入查询。" in empty.content.decode() and "invalid_request" in empty.content.decode()


def test_a_query_jobs_state_in_chinese(fund, bob, catalog, plan):
    approved(fund, catalog.industry, plan, [Mode.QUERY])
    client = signed_in(bob)
    submitted = client.post(
        "/workbench/jobs", {"sql": "SELECT 1 AS one FROM industry_prosperity_monthly LIMIT 1", "format": "parquet"}
    )
    assert submitted.status_code == 302
    page = chinese(client.get(submitted["Location"], **CHINESE))
    assert re.search(r'<dd id="job-state">(排队中|运行中|已完成)</dd>', page)
    state = client.get(f"{submitted['Location']}?format=json", **CHINESE).json()
    assert state["state"] in ("queued", "running", "succeeded") and state["state_label"] in (
        "排队中",
        "运行中",
        "已完成",
    )
