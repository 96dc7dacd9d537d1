from django.contrib import admin
from django.urls import path

from testproject.shop import views

urlpatterns = [
    path("", views.journal, name="journal"),
    path("checkout/", views.start_checkout, name="checkout"),
    path("pay/<str:workflow_id>/", views.payment_page, name="pay"),
    path("webhooks/payment/", views.payment_webhook, name="payment-webhook"),
    path("orders/<int:order_id>/", views.order_detail, name="order"),
    path("admin/", admin.site.urls),
]
