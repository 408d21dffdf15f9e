from django.apps import AppConfig


class VitaminConfig(AppConfig):
    name = "vitamin"
    verbose_name = "Vitamin"
