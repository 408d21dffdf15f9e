"""A Celery broker that does not take a message, met by a web request that queues a task.

The broker is really unreachable: the Celery app is pointed at a local port nothing listens on (Redis, as
kombu meets a server that is down), or the embedded file-system queue at a folder it cannot write. Every
request that queues something then answers 503 with a `Retry-After` (the site's 503 page, or the API's error
shape with code `queue_unavailable`), never a 500; and nothing is left looking queued with no message on its
way to a worker: a refresh run is failed at once with the reason, in the audit log too.
"""

from __future__ import annotations

import socket
import time
from contextlib import contextmanager

import pytest
from catalog_support import approved, auth, bearer_token
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from catalog.models import RefreshRun
from datasets.spec import Mode
from vitamin.celery import app

REFRESH_NOW = "/staff/datasets/card_transactions/refresh/"
INDUSTRY_SQL = "SELECT csi_industry, SUM(gmv) AS gmv FROM industry_prosperity_monthly GROUP BY 1 ORDER BY 1"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed when the socket is: nothing listens there


@contextmanager
def broker(url: str, **transport_options):
    """The Celery app publishing to `url` (with these transport options) for the block. Celery keeps its
    connection and producer pools once made; they are dropped on the way in and out, as after a fork."""
    conf = app.conf
    saved = conf.broker_url, conf.broker_transport_options

    def drop_pools():
        app._pool = None
        app.amqp._producer_pool = None

    conf.broker_url, conf.broker_transport_options = url, {**saved[1], **transport_options}
    drop_pools()
    try:
        yield
    finally:
        conf.broker_url, conf.broker_transport_options = saved
        drop_pools()


@pytest.fixture(params=["redis_down", "queue_folder_unwritable"])
def unreachable_broker(request, tmp_path):
    """A Redis broker at a port nothing listens on, or the file-system queue on a folder that cannot be made
    (its parent is a file: running as root, permissions would not stop the write)."""
    if request.param == "redis_down":
        with broker(f"redis://127.0.0.1:{closed_port()}/0"):
            yield request.param
        return
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    queue = str(blocker / "queue")
    with broker("filesystem://", data_folder_in=queue, data_folder_out=queue):
        yield request.param


@pytest.fixture
def redis_down():
    with broker(f"redis://127.0.0.1:{closed_port()}/0"):
        yield


def assert_failed_not_queued(run: RefreshRun) -> None:
    assert run.status == RefreshRun.Status.FAILED and run.finished_at is not None and not run.task_id
    assert run.error.startswith("not queued: the task queue did not answer ("), run.error
    events = {event.action: event for event in AuditEvent.objects.all() if event.details.get("run") == run.pk}
    assert set(events) == {"dataset.refresh.request", "dataset.refresh"}
    assert events["dataset.refresh"].outcome == "failure" and events["dataset.refresh"].details["status"] == "failed"


# --- "Refresh now" on the staff pages --------------------------------------------------------------


def test_refresh_now_without_a_broker_is_the_sites_503_page_and_fails_the_run(
    client, catalog, olga, unreachable_broker
):
    client.force_login(olga)
    started = time.monotonic()
    response = client.post(REFRESH_NOW)
    took = time.monotonic() - started
    html = response.content.decode()
    run = RefreshRun.objects.get()

    assert response.status_code == 503 and int(response["Retry-After"]) >= 1
    assert "briefly unavailable" in html and "/static/portal/vitamin.css" in html
    assert (
        f"The task queue is not answering, so the refresh of card_transactions could not be queued: run {run.pk} "
        "is marked failed." in html
    )
    assert "nothing was changed" not in html  # the general text would not be true here
    assert "Traceback" not in html and "Errno" not in html and "127.0.0.1" not in html
    assert took < 10, f"the refusal took {took:.1f} s"
    assert_failed_not_queued(run)
    assert not RefreshRun.objects.filter(status__in=[RefreshRun.Status.QUEUED, RefreshRun.Status.RUNNING]).exists()

    # The dataset's page shows the run failed, with the reason, and polls nothing.
    page = client.get("/staff/datasets/card_transactions/").content.decode()
    assert "not queued: the task queue did not answer" in page
    assert f'data-progress-url="/staff/refreshes/{run.pk}/progress/"' not in page


def test_refresh_now_queues_again_once_the_broker_answers(client, catalog, olga):
    client.force_login(olga)
    with broker(f"redis://127.0.0.1:{closed_port()}/0"):
        assert client.post(REFRESH_NOW).status_code == 503
    response = client.post(REFRESH_NOW)  # the same process, the embedded queue back
    assert response.status_code == 302
    queued = RefreshRun.objects.get(status=RefreshRun.Status.QUEUED)
    assert queued.task_id and response["Location"].endswith(f"#run-{queued.pk}")
    assert RefreshRun.objects.filter(status=RefreshRun.Status.FAILED).count() == 1


def test_the_503_page_is_in_the_pages_language(client, catalog, olga, redis_down):
    client.force_login(olga)
    html = client.post(REFRESH_NOW, HTTP_ACCEPT_LANGUAGE="zh-Hans").content.decode()
    assert "任务队列" in html and "The task queue" not in html


def test_the_admin_action_says_the_queue_is_down_and_fails_the_run(client, catalog, olga, redis_down):
    olga.is_superuser = True
    olga.save()
    client.force_login(olga)
    response = client.post(
        "/admin/catalog/dataset/",
        {"action": "refresh_now", "_selected_action": [catalog.cards.pk, catalog.industry.pk]},
        follow=True,
    )
    run = RefreshRun.objects.get()  # the first failed; the other was not tried
    assert response.status_code == 200
    assert [str(message) for message in response.context["messages"]] == [
        f"{run.dataset.slug}: not queued, the task queue is not answering (run {run.pk} is marked failed). "
        "Try again in a few seconds."
    ]
    assert_failed_not_queued(run)


def test_the_refresh_command_says_the_queue_is_down_and_fails_the_run(catalog, redis_down):
    with pytest.raises(CommandError, match=r"card_transactions: not queued, the task queue is not answering"):
        call_command("refresh_dataset", "card_transactions")
    assert_failed_not_queued(RefreshRun.objects.get())


# --- the API -------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # the job is queued after its transaction commits, as in production
def test_a_query_job_submitted_while_the_broker_is_down_is_503_queue_unavailable(client, fund, catalog, plan):
    approved(fund, catalog.industry, plan, [Mode.QUERY])
    token = bearer_token(fund)
    with broker(f"redis://127.0.0.1:{closed_port()}/0"):
        response = client.post("/api/v1/jobs", {"sql": INDUSTRY_SQL}, content_type="application/json", **auth(token))
    assert response.status_code == 503, response.content[:500]
    assert int(response["Retry-After"]) >= 1
    error = response.json()["error"]
    assert error["code"] == "queue_unavailable" and error["request_id"] and "again" in error["message"]
    assert "Error" not in error["message"] and "127.0.0.1" not in error["message"]


@pytest.mark.django_db(transaction=True)
def test_a_query_job_the_broker_refused_does_not_stay_queued(client, fund, catalog, plan):
    from query.models import QueryJob

    approved(fund, catalog.industry, plan, [Mode.QUERY])
    token = bearer_token(fund)
    with broker(f"redis://127.0.0.1:{closed_port()}/0"):
        response = client.post("/api/v1/jobs", {"sql": INDUSTRY_SQL}, content_type="application/json", **auth(token))
    assert response.status_code == 503 and response.json()["error"]["code"] == "queue_unavailable"
    assert response.headers["Retry-After"]
    assert not QueryJob.objects.filter(state=QueryJob.State.QUEUED).exists()
    (job,) = QueryJob.objects.all()
    assert (job.state, job.error_code) == (QueryJob.State.FAILED, "queue_unavailable")
