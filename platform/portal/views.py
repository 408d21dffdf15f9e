from django.shortcuts import redirect, render
from django.templatetags.static import static


def home(request):
    return render(request, "portal/home.html")


def favicon(request):
    """Browsers ask for /favicon.ico whatever the page links; send them to the site's SVG icon."""
    return redirect(static("portal/favicon.svg"), permanent=True)
