"""A real SMTP server for callwatch's email tests (aiosmtpd).

Usage: smtp_sink.py [USER PASSWORD]
Prints "READY <port>" once listening on 127.0.0.1, then one JSON line per
received mail: envelope sender and recipients, whether the session
authenticated, the parsed Subject, threading headers, the text body and the
HTML part (if any). Runs until stdin closes.
With USER and PASSWORD, AUTH (PLAIN/LOGIN) is required, without TLS.
"""

import email
import email.policy
import json
import logging
import socket
import sys
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        print(json.dumps({
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "authenticated": bool(session.authenticated),
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "subject": str(msg["subject"]),
            "content_type": msg.get_content_type(),
            "message_id": msg["message-id"] and str(msg["message-id"]),
            "in_reply_to": msg["in-reply-to"] and str(msg["in-reply-to"]),
            "references": msg["references"] and str(msg["references"]),
            "body": text.get_content().replace("\r\n", "\n") if text else None,
            "html": html.get_content() if html else None,
        }), flush=True)
        return "250 OK"


def main():
    user = sys.argv[1].encode() if len(sys.argv) > 2 else None
    password = sys.argv[2].encode() if len(sys.argv) > 2 else None

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login == user and auth_data.password == password)
        # handled=False makes aiosmtpd answer 535 itself.
        return AuthResult(success=ok, handled=False)

    # AUTH without TLS is what the tests want; keep aiosmtpd quiet about it.
    warnings.simplefilter("ignore")
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    kwargs = {}
    if user is not None:
        kwargs = dict(authenticator=authenticator, auth_required=True,
                      auth_require_tls=False)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    print(f"READY {port}", flush=True)
    sys.stdin.read()
    controller.stop()


if __name__ == "__main__":
    main()
