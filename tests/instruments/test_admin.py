"""instruments.admin: read-only changelists with search (symbol or security id) and filters."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.contrib.admin.filters import DateFieldListFilter
from django.test import Client

pytestmark = [pytest.mark.catalog, pytest.mark.django_db]

IST = ZoneInfo("Asia/Kolkata")
INSTRUMENTS = "/admin/instruments/instrument/"
DERIVATIVES = "/admin/instruments/derivative/"
IMPORTS = "/admin/instruments/catalogimport/"


@pytest.fixture
def staff(client: Client, django_user_model, import_file, compact_file, settings) -> Client:
    # The project's manifest storage needs `collectstatic` first (the image runs it); these
    # tests are about the changelists, not static files.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    import_file(compact_file)
    user = django_user_model.objects.create_superuser("ops", "ops@example.com", None)
    client.force_login(user)
    return client


def listed(client: Client, url: str, **params: str) -> set[int]:
    """Security ids on the changelist page for these query parameters."""
    response = client.get(url, params)
    assert response.status_code == 200, response
    changelist = response.context["cl"]
    return {row.security_id for row in changelist.result_list}


def test_the_instrument_changelist_renders(staff):
    response = staff.get(INSTRUMENTS)
    assert response.status_code == 200
    page = response.content.decode()
    assert "NIFTY" in page
    assert "Nifty 50" in page
    assert listed(staff, INSTRUMENTS) == {13, 25, 51, 2885, 500325}


def test_the_derivative_changelist_renders(staff):
    response = staff.get(DERIVATIVES)
    assert response.status_code == 200
    page = response.content.decode()
    assert "NIFTY-Oct2024-25800-CE" in page
    assert "SENSEX-Oct2024-81800-PE" in page
    assert len(listed(staff, DERIVATIVES)) == 15


def test_the_catalog_is_read_only_in_the_admin(staff):
    assert staff.get(f"{INSTRUMENTS}add/").status_code == 403
    assert staff.get(f"{DERIVATIVES}add/").status_code == 403
    page = staff.get(DERIVATIVES).content.decode()
    assert "action-checkbox" not in page  # no delete action


def test_an_anonymous_visitor_is_sent_to_the_login_page(client):
    response = client.get(DERIVATIVES)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_search_by_trading_symbol(staff):
    assert listed(staff, INSTRUMENTS, q="RELIANCE") == {2885, 500325}
    assert listed(staff, DERIVATIVES, q="NIFTY-Oct2024-25800") == {44430, 44431, 44501, 44502}
    assert listed(staff, DERIVATIVES, q="sensex") == {1123771, 1123772}


def test_search_by_numeric_security_id(staff):
    assert listed(staff, DERIVATIVES, q="44430") == {44430}
    assert listed(staff, DERIVATIVES, q=" 1123772 ") == {1123772}
    assert listed(staff, INSTRUMENTS, q="13") == {13}
    assert listed(staff, INSTRUMENTS, q="99999") == set()


@pytest.mark.parametrize("term", ["\u00b2", "\u2460", "12\u00b3", "\u0663", "9" * 30, "9" * 5000])
@pytest.mark.parametrize("url", [INSTRUMENTS, DERIVATIVES])
def test_a_term_that_is_no_security_id_searches_the_symbols_only(staff, url, term):
    # "²" and "①" are digits to str.isdigit() but not to int() (a 500 before); 30 digits
    # overflow the column (a 500 on SQLite), 5000 exceed Python's int() limit.
    assert listed(staff, url, q=term) == set()


def test_the_largest_security_id_the_column_holds_is_still_searched(staff):
    assert listed(staff, DERIVATIVES, q=str(2**63 - 1)) == set()
    assert listed(staff, DERIVATIVES, q=" 44430 ") == {44430}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"exchange__exact": "BSE"}, {51, 500325}),
        ({"exchange_segment__exact": "IDX_I"}, {13, 25, 51}),
        ({"instrument__exact": "EQUITY"}, {2885, 500325}),
        ({"is_active__exact": "1"}, {13, 25, 51, 2885, 500325}),
    ],
    ids=["exchange", "exchange_segment", "instrument", "is_active"],
)
def test_instrument_list_filters(staff, params, expected):
    assert listed(staff, INSTRUMENTS, **params) == expected


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"exchange__exact": "BSE"}, {1123771, 1123772}),
        ({"exchange_segment__exact": "BSE_FNO"}, {1123771, 1123772}),
        ({"instrument__exact": "FUTIDX"}, {35006, 35007}),
        ({"instrument__exact": "OPTSTK"}, {60001}),
        (
            {"option_type__exact": "PE"},
            {44429, 44431, 44433, 44502, 35037, 1123772},
        ),
        ({"option_type__exact": ""}, {35006, 35007}),  # futures
        ({"expiry_flag__exact": "M"}, {35006, 35007, 60001}),
        ({"expiry_date__year": "2024", "expiry_date__month": "11"}, {35007}),  # date hierarchy
    ],
    ids=[
        "exchange",
        "exchange_segment",
        "instrument futures",
        "instrument stock options",
        "option_type puts",
        "option_type none",
        "expiry_flag",
        "expiry_date hierarchy",
    ],
)
def test_derivative_list_filters(staff, params, expected):
    assert listed(staff, DERIVATIVES, **params) == expected


def test_the_expiry_date_filter_offers_today_and_filters_by_it(staff, time_machine):
    time_machine.move_to(datetime(2024, 10, 10, 9, 30, tzinfo=IST), tick=False)
    response = staff.get(DERIVATIVES)
    date_filter = next(
        spec
        for spec in response.context["cl"].filter_specs
        if isinstance(spec, DateFieldListFilter)
    )
    assert date_filter.field_path == "expiry_date"
    links = dict(date_filter.links)

    today = listed(staff, DERIVATIVES, **links["Today"])

    assert today == {44428, 44429, 44430, 44431, 44432, 44433}  # NIFTY's 10 Oct weekly
    this_month = listed(staff, DERIVATIVES, **links["This month"])
    assert this_month == {c for c in listed(staff, DERIVATIVES) if c != 35007}  # not 28 Nov


# -- the import log -----------------------------------------------------------------------------


def test_the_import_log_lists_each_import_and_failure_read_only(staff, import_file, tmp_path):
    from instruments.importer import ImportFailed
    from instruments.models import CatalogImport

    with pytest.raises(ImportFailed):
        import_file(tmp_path / "nowhere.csv")

    response = staff.get(IMPORTS)

    assert response.status_code == 200
    rows = list(response.context["cl"].result_list)
    assert [row.outcome for row in rows] == ["failed", "imported"]  # newest first
    page = response.content.decode()
    assert "Failed (catalog unchanged)" in page
    assert "compact_catalog.csv" in page
    imported = CatalogImport.objects.get(outcome="imported")
    assert staff.get(f"{IMPORTS}add/").status_code == 403
    assert staff.get(f"{IMPORTS}{imported.pk}/delete/").status_code == 403
    assert "action-checkbox" not in page  # no delete action
    detail = staff.get(f"{IMPORTS}{imported.pk}/change/")
    assert detail.status_code == 200  # a view-only page: nothing to save
    assert 'name="_save"' not in detail.content.decode()
    assert staff.post(f"{IMPORTS}{imported.pk}/change/", {"source": "x"}).status_code == 403
    assert CatalogImport.objects.get(pk=imported.pk).source == imported.source


def test_the_import_log_filters_by_outcome(staff, import_file, tmp_path):
    from instruments.importer import ImportFailed

    with pytest.raises(ImportFailed):
        import_file(tmp_path / "nowhere.csv")

    response = staff.get(IMPORTS, {"outcome__exact": "failed"})

    assert [row.error for row in response.context["cl"].result_list] == [
        f"{tmp_path / 'nowhere.csv'}: no such file"
    ]
