"""Two operators saving the algo overrides in the admin at once: the second is refused (the
version check locks the row until the first's save commits), never a silent overwrite of the
first's edit. Real threads on their own PostgreSQL connections (SQLite serialises writers by
its IMMEDIATE transactions already)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import Client

from trading.admin import SettingAdmin
from trading.config.load import OVERRIDES_KEY
from trading.models import Setting

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("project_algo_config"),
]


def test_two_saves_from_one_version_make_one_write_and_one_refusal(django_user_model, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("row locks: PostgreSQL (make test)")
    user = django_user_model.objects.create_superuser("ops", "ops@example.com", None)
    Setting.put(OVERRIDES_KEY, {"strikes": {"offset": 1}})
    change = f"/admin/trading/setting/{Setting.objects.get(key=OVERRIDES_KEY).pk}/change/"
    opened = Client()
    opened.force_login(user)
    version = opened.get(change).context["adminform"].form["overrides_version"].value()

    # The first save stops after its check, inside its transaction, until told to go on.
    checked, go_on = threading.Event(), threading.Event()
    save_model = SettingAdmin.save_model

    def held_save(self, request, obj, form, change_):
        if obj.value == {"strikes": {"offset": 2}}:
            checked.set()
            assert go_on.wait(30)
        save_model(self, request, obj, form, change_)

    monkeypatch.setattr(SettingAdmin, "save_model", held_save)
    answers: dict[str, int] = {}

    def save(name: str, value: str) -> None:
        client = Client()
        client.force_login(user)
        try:
            response = client.post(change, {"value": value, "overrides_version": version})
            answers[name] = response.status_code
        finally:
            connection.close()

    first = threading.Thread(target=save, args=("first", '{"strikes": {"offset": 2}}'))
    first.start()
    assert checked.wait(30)
    second = threading.Thread(target=save, args=("second", '{"risk": {"max_trades_per_day": 6}}'))
    second.start()
    second.join(1.0)  # without the lock it passes its check now and overwrites the first
    go_on.set()
    first.join(30)
    second.join(30)
    assert answers == {"first": 302, "second": 200}  # 200: the form again, with the refusal
    assert Setting.get(OVERRIDES_KEY) == {"strikes": {"offset": 2}}
