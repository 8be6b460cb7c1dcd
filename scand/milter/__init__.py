"""scand's milter front: Postfix ``smtpd_milters`` and Sendmail ``INPUT_MAIL_FILTER``."""
