"""Portal pages for institutions: applying, the institution page, members and invitations, the review queue."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from institutions import lifecycle, members
from institutions.access import ensure_manager, ensure_member
from institutions.forms import ApplicationForm, InviteForm, StatusChangeForm
from institutions.models import Institution, InstitutionStatus, Member
from vitamin.staff import staff_required


@login_required
def list_my_institutions(request):
    memberships = Member.objects.filter(user=request.user).select_related("institution")
    pending_reviews = (
        Institution.objects.filter(status=InstitutionStatus.PENDING).count() if request.user.is_staff else 0
    )
    return render(
        request, "institutions/my_institutions.html", {"memberships": memberships, "pending_reviews": pending_reviews}
    )


@login_required
@require_http_methods(["GET", "POST"])
def apply(request):
    form = ApplicationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        institution = lifecycle.file_application(applicant=request.user, request=request, **form.cleaned_data)
        messages.success(request, _("Your application was filed. You will get an email when it has been reviewed."))
        return redirect("institution", pk=institution.pk)
    return render(request, "institutions/apply.html", {"form": form})


@login_required
def show_institution(request, pk: int):
    institution = get_object_or_404(Institution, pk=pk)
    member = ensure_member(request.user, institution)
    return render(
        request,
        "institutions/institution.html",
        {
            "institution": institution,
            "member": member,
            "history": institution.status_changes.select_related("changed_by")[:20],
            "status_form": StatusChangeForm(institution=institution) if request.user.is_staff else None,
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def manage_members(request, pk: int):
    institution = get_object_or_404(Institution, pk=pk)
    member = ensure_member(request.user, institution)
    form = InviteForm(request.POST or None)
    if request.method == "POST":
        ensure_manager(request.user, institution)
        if form.is_valid():
            try:
                members.invite(institution, by=request.user, request=request, **form.cleaned_data)
            except members.MembershipError as exc:
                messages.error(request, str(exc))
            else:
                messages.success(request, _("Invitation sent to %(email)s.") % {"email": form.cleaned_data["email"]})
                return redirect("members", pk=institution.pk)
    return render(
        request,
        "institutions/members.html",
        {
            "institution": institution,
            "member": member,
            "members": institution.members.select_related("user").order_by("role", "user__username"),
            "invitations": institution.invitations.filter(accepted_at__isnull=True),
            "form": form,
        },
    )


@login_required
@require_POST
def remove_member(request, pk: int, member_pk: int):
    institution = get_object_or_404(Institution, pk=pk)
    ensure_manager(request.user, institution)
    target = get_object_or_404(Member, pk=member_pk, institution=institution)
    try:
        members.remove(target, by=request.user, request=request)
    except members.MembershipError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            _("%(username)s was removed; their tools' tokens are revoked.") % {"username": target.user.get_username()},
        )
    return redirect("members", pk=institution.pk)


@login_required
@require_http_methods(["GET", "POST"])
def accept_invitation(request, token: str):
    try:
        invitation = members.invitation_from_token(token)
        if request.method == "POST":
            members.accept(invitation, request.user, request=request)
            messages.success(request, _("Welcome to %(name)s.") % {"name": invitation.institution.legal_name})
            return redirect("institution", pk=invitation.institution_id)
    except members.MembershipError as exc:
        return render(request, "institutions/message.html", {"title": "Invitation", "message": str(exc)}, status=400)
    return render(request, "institutions/accept_invitation.html", {"invitation": invitation})


@staff_required
def review_queue(request):
    pending = (
        Institution.objects.filter(status=InstitutionStatus.PENDING).select_related("applicant").order_by("created_at")
    )
    return render(request, "institutions/review_queue.html", {"pending": pending})


@staff_required
@require_POST
def change_status(request, pk: int):
    institution = get_object_or_404(Institution, pk=pk)
    form = StatusChangeForm(request.POST, institution=institution)
    if form.is_valid():
        try:
            lifecycle.change_status(
                institution,
                form.cleaned_data["to_status"],
                reason=form.cleaned_data["reason"],
                by=request.user,
                request=request,
            )
        except lifecycle.StatusChangeError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(
                request,
                _("%(name)s is now %(status)s.")
                % {"name": institution.legal_name, "status": institution.get_status_display().lower()},
            )
    else:
        messages.error(request, _("Choose an allowed status and give a reason."))
    if request.POST.get("return_to") == "review":
        return redirect("review-queue")
    return redirect("institution", pk=pk)
