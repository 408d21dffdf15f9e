"""Portal page routes: accounts, institutions and members (their OAuth clients' pages are routed by oauth.urls)."""

from django.urls import path

from institutions import accounts, views

urlpatterns = [
    path("accounts/signup/", accounts.sign_up, name="signup"),
    path("accounts/verify/<str:token>/", accounts.verify_email, name="verify-email"),
    path("accounts/login/", accounts.SignInView.as_view(), name="login"),
    path("accounts/logout/", accounts.SignOutView.as_view(), name="logout"),
    path("accounts/password-reset/", accounts.PasswordResetRequestView.as_view(), name="password-reset"),
    path("accounts/password-reset/sent/", accounts.PasswordResetSentView.as_view(), name="password-reset-sent"),
    path(
        "accounts/password-reset/<uidb64>/<token>/",
        accounts.PasswordResetConfirmView.as_view(),
        name="password-reset-confirm",
    ),
    path("accounts/password-reset/done/", accounts.PasswordResetCompleteView.as_view(), name="password-reset-complete"),
    path("institutions/", views.list_my_institutions, name="my-institutions"),
    path("institutions/apply/", views.apply, name="apply"),
    path("institutions/review/", views.review_queue, name="review-queue"),
    path("institutions/<int:pk>/", views.show_institution, name="institution"),
    path("institutions/<int:pk>/status/", views.change_status, name="change-status"),
    path("institutions/<int:pk>/members/", views.manage_members, name="members"),
    path("institutions/<int:pk>/members/<int:member_pk>/remove/", views.remove_member, name="remove-member"),
    path("invitations/<str:token>/", views.accept_invitation, name="accept-invitation"),
]
