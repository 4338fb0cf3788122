"""Staff UI: server-rendered Japanese pages (Jinja2) with htmx for partial updates.

- `pages`: templates, security headers, error pages (no JSON, no stack traces);
- `site`: sign-in (password + TOTP, first-login TOTP enrolment), sessions, CSRF,
  sign-out, password change and the home page, for any node given its `AuthTables`;
- `admin`: staff administration (管理) and the audit log viewer (監査), also generic;
- `atena`: the atena screens (resident search and detail, audited individual-number
  reveal, inquiry) and `create_staff_app`, the staff listener's ASGI app;
- `listener`: running the staff listener beside a node's mTLS listener in one process.
"""
