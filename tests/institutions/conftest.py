"""The cast of the institution tests: alice owns the fund, bob is an analyst there, olga is platform staff."""

from __future__ import annotations

import pytest
from partner_support import add_member, make_institution, make_user

from institutions.models import Role


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice(db):
    return make_user("alice@fund.example")


@pytest.fixture
def bob(db):
    return make_user("bob@fund.example")


@pytest.fixture
def olga(db):
    return make_user("olga@vitamin.example", staff=True)


@pytest.fixture
def fund(alice, bob):
    institution = make_institution("Demo Fund Management Co.", 1, owner=alice)
    add_member(institution, bob, Role.ANALYST)
    return institution
