from django.contrib import admin
from django.urls import path

from testproject.shop import views

urlpatterns = [
    path("", views.journal, name="journal"),
    path("admin/", admin.site.urls),
]
