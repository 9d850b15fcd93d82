# Into Junk (image/dovecot/tern-sieve.conf): teach rspamd spam.
require ["vnd.dovecot.pipe", "copy", "imapsieve", "environment", "variables"];

if environment :matches "imap.user" "*" {
  set "username" "${1}";
}

pipe :copy "learn-spam" [ "${username}" ];
