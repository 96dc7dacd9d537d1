from django.contrib import admin
from django.urls import include, path

from testproject.shop import demo, views

urlpatterns = [
    path("", demo.page, name="demo"),
    path("demo/checkout/start/", demo.start_checkout),
    path("demo/checkout/<str:workflow_id>/payment-url/", demo.payment_url),
    path("demo/checkout/<str:workflow_id>/progress/", demo.progress),
    path("demo/checkout/<str:workflow_id>/status/", demo.checkout_status),
    path("demo/crash-worker/", demo.crash_worker),
    path("demo/fanout/start/", demo.start_fanout),
    path("demo/fanout/<str:batch>/", demo.fanout_progress),
    path("demo/refund/start/", demo.start_refund),
    path("journal/", views.journal, name="journal"),
    path("checkout/", views.start_checkout, name="checkout"),
    path("pay/<str:workflow_id>/", views.payment_page, name="pay"),
    path("webhooks/payment/", views.payment_webhook, name="payment-webhook"),
    path("orders/<int:order_id>/", views.order_detail, name="order"),
    path("quote/<int:amount>/", views.price_quote, name="quote"),
    path("admin/", admin.site.urls),
    path("dbos/", include("django_dbos.urls")),
]
