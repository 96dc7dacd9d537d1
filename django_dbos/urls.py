"""The JSON API's routes: `path("dbos/", include("django_dbos.urls"))` (see docs and openapi.py)."""

from django.urls import path

from . import views

app_name = "django_dbos"

urlpatterns = [
    path("workflows/", views.list_workflows, name="workflows"),
    # Before the routes of one workflow, so that "start" is never read as a workflow id here.
    path("workflows/start/<str:name>/", views.start_workflow, name="start"),
    path("workflows/<str:workflow_id>/", views.workflow, name="workflow"),
    path("workflows/<str:workflow_id>/steps/", views.list_steps, name="steps"),
    path("workflows/<str:workflow_id>/cancel/", views.cancel_workflow, name="cancel"),
    path("workflows/<str:workflow_id>/resume/", views.resume_workflow, name="resume"),
    path("workflows/<str:workflow_id>/fork/", views.fork_workflow, name="fork"),
    path("workflows/<str:workflow_id>/send/", views.send_message, name="send"),
    path("workflows/<str:workflow_id>/events/<str:key>/", views.get_event, name="event"),
    path("workflows/<str:workflow_id>/streams/<str:key>/", views.read_stream, name="stream"),
    path("waits/", views.list_waits, name="waits"),
    path("queues/", views.list_queues, name="queues"),
    path("health/", views.health, name="health"),
    path("metrics/", views.metrics, name="metrics"),
    path("openapi.json", views.openapi_schema, name="openapi"),
]
