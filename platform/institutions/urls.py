"""Portal page routes: accounts, institutions, members, and the institutions' OAuth clients."""

from django.urls import path

from institutions import accounts, views
from oauth import pages as client_pages

urlpatterns = [
    path("accounts/signup/", accounts.sign_up, name="signup"),
    path("accounts/verify/<str:token>/", accounts.verify_email, name="verify-email"),
    path("accounts/login/", accounts.SignInView.as_view(), name="login"),
    path("accounts/logout/", accounts.SignOutView.as_view(), name="logout"),
    path("institutions/", views.list_my_institutions, name="my-institutions"),
    path("institutions/apply/", views.apply, name="apply"),
    path("institutions/review/", views.review_queue, name="review-queue"),
    path("institutions/<int:pk>/", views.show_institution, name="institution"),
    path("institutions/<int:pk>/status/", views.change_status, name="change-status"),
    path("institutions/<int:pk>/members/", views.manage_members, name="members"),
    path("institutions/<int:pk>/members/<int:member_pk>/remove/", views.remove_member, name="remove-member"),
    path("invitations/<str:token>/", views.accept_invitation, name="accept-invitation"),
    path("institutions/<int:pk>/clients/", client_pages.list_clients, name="clients"),
    path("institutions/<int:pk>/clients/new/", client_pages.new_client, name="new-client"),
    path(
        "institutions/<int:pk>/registration-tokens/", client_pages.new_registration_token, name="new-registration-token"
    ),
    path("clients/<str:client_id>/", client_pages.show_client, name="client"),
    path("clients/<str:client_id>/rotate-secret/", client_pages.rotate_client_secret, name="rotate-client-secret"),
    path("clients/<str:client_id>/revoke-tokens/", client_pages.revoke_client_tokens, name="revoke-client-tokens"),
    path("clients/<str:client_id>/disable/", client_pages.disable_client, name="disable-client"),
]
