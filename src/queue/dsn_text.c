/* dsn_text.c: what a delivery status notice says to people, in English and German:
 * subject, introduction and, per class of problem (dsn.h), what it means and what
 * the sender can do. Data only; dsn.c fills in the places. */
#include "queue/dsn.h"

/* Class texts: "%H" becomes our hostname, "%L" the queue lifetime ("5 days"). */
const struct texts dsn_texts_en = {
    .subject = {"Undelivered Mail Returned to Sender", "Delayed Mail (still being retried)",
                "Successful Mail Delivery Report"},
    .intro = {"This is the mail system at %s.\n\nYour message could not be delivered to the "
              "recipients below. We will not try again. For each recipient you find what the "
              "receiving mail server answered, what it means and what you can do.",
              "This is the mail system at %s.\n\nYour message has not been delivered yet to the "
              "recipients below. This is only a warning: you do not need to send the message "
              "again. We keep trying, and you will hear from us again only if it finally cannot "
              "be delivered.",
              "This is the mail system at %s.\n\nYour message was delivered to the recipients "
              "below, as you asked when sending it."},
    .retry_until = "We keep trying until %s.",
    .msg_line = "Your message: received %s, queue ID %s.",
    .we_said = "the mail system at %s said:",
    .delivered_local = "delivered to the recipient's mailbox.",
    .relayed = "handed on to %s. That server sends no delivery reports, so this is the "
               "last report you get about this recipient.",
    .no_content = "(The original message could not be read any more.)",
    .headers_only = "(Your message was too large to return whole: only its headers are "
                    "attached.)",
    .cls =
        {
            [CL_USER] = "What this means: the receiving server says this address does not "
                        "exist. Please check the address for typing errors, both the part "
                        "before the @ and the domain. If it is right, the person may have "
                        "left or changed address: ask them for the current one another way.",
            [CL_FULL] = "What this means: the recipient's mailbox is full. This is not a "
                        "problem with your message; the recipient has to make room. You may "
                        "let them know another way.",
            [CL_SIZE] = "What this means: your message is larger than the receiving server "
                        "accepts. Send large files another way (for example as a download "
                        "link), or spread the attachments over several smaller messages.",
            [CL_BLOCKED] = "What this means: the receiving server refused mail from the "
                           "address of our server, because it found that address on a "
                           "blocklist (or in its own reputation data). This is not your fault "
                           "and has nothing to do with your message. The operators of %H are "
                           "responsible for the address and will have it removed from the "
                           "list. Please send your message again later, for example in an "
                           "hour. If it is refused again, forward this notice to your "
                           "provider's support (postmaster@%H).",
            [CL_AUTH] = "What this means: the receiving server refused the message because "
                        "the domain of your sender address did not authorise the sending "
                        "server (SPF, DKIM or DMARC check). If you send with an address of "
                        "your own domain, its DNS records (SPF) must list the servers you "
                        "send through: ask whoever manages your domain. If the recipient "
                        "forwards mail to another provider, the forwarding broke the check: "
                        "ask the recipient to use the final address directly.",
            [CL_POLICY] = "What this means: the receiving server refused the message because "
                          "of its own rules (for example a spam filter, or a limit on who may "
                          "write to this address). Its answer above usually names the rule. If "
                          "your message is legitimate, contact the recipient another way or "
                          "write to the postmaster of the recipient's domain.",
            [CL_DOMAIN] = "What this means: the domain of this address (the part after the "
                          "@) does not exist or accepts no mail at all. Please check how the "
                          "domain is spelt.",
            [CL_LOOP] = "What this means: the message went round in a loop between mail "
                        "servers (for example two forwardings pointing at each other, or a "
                        "domain whose mail servers point back to us). Only the administrator "
                        "of the recipient's domain can fix this: please forward this notice "
                        "to them, or to postmaster@%H.",
            [CL_EXPIRED] = "What this means: we tried to deliver your message for %L, but the "
                           "receiving side never took it; the last answer is quoted above. "
                           "Please check the address. If it is right, the recipient's mail "
                           "server has been out of order for a long time: contact the "
                           "recipient another way, then send the message again.",
            [CL_UTF8] = "What this means: the address or the message needs internationalised "
                        "mail (SMTPUTF8), which the receiving server does not support. Use an "
                        "address of the recipient in plain ASCII letters, if there is one.",
            [CL_POOL_BLOCKED] = "What this means: the receiving server blocks the sending "
                                "addresses of our mail system (they are on a blocklist it "
                                "uses). This is not your fault and has nothing to do with your "
                                "message. The operators of %H know about it and are working "
                                "on having the addresses removed from the list. Please send "
                                "your message again later; if it matters now, reach the "
                                "recipient another way.",
            [CL_PERM_OTHER] = "What this means: the receiving server refused the message for "
                              "good; its answer above gives the reason. If the reason is not "
                              "clear to you, forward this notice to your provider's support "
                              "(postmaster@%H).",
        },
    .blocked_delay = "What this means: the receiving server refuses mail from the address of our "
                     "server for now, because it found that address on a blocklist. This is "
                     "not your fault and has nothing to do with your message. The operators "
                     "of %H are responsible for the address and will have it removed from "
                     "the list; meanwhile we try other ways.",
    .temp = "This is a temporary problem at the receiving side or on the way there. There "
            "is nothing you need to do: we keep trying until %s and tell you if the message "
            "cannot be delivered by then.",
    .url = "The receiving server's answer contains a web address with more about the listing.",
};

const struct texts dsn_texts_de = {
    .subject = {"Unzustellbare Nachricht", "Verzögerte Zustellung (wird weiter versucht)",
                "Zustellbericht"},
    .intro = {"Dies ist das Mailsystem von %s.\n\nIhre Nachricht konnte an die unten genannten "
              "Empfänger nicht zugestellt werden. Wir versuchen es nicht weiter. Zu jedem "
              "Empfänger finden Sie, was der empfangende Mailserver geantwortet hat, was das "
              "bedeutet und was Sie tun können.",
              "Dies ist das Mailsystem von %s.\n\nIhre Nachricht ist an die unten genannten "
              "Empfänger noch nicht zugestellt. Dies ist nur eine Warnung: Sie müssen die "
              "Nachricht nicht erneut senden. Wir versuchen es weiter und melden uns nur dann "
              "wieder, wenn sie endgültig nicht zugestellt werden kann.",
              "Dies ist das Mailsystem von %s.\n\nIhre Nachricht wurde den unten genannten "
              "Empfängern zugestellt, wie Sie es beim Senden angefordert haben."},
    .retry_until = "Wir versuchen es weiter bis %s.",
    .msg_line = "Ihre Nachricht: angenommen %s, Queue-ID %s.",
    .we_said = "das Mailsystem von %s meldete:",
    .delivered_local = "in das Postfach des Empfängers zugestellt.",
    .relayed = "an %s übergeben. Dieser Server sendet keine Zustellberichte; dies ist also "
               "der letzte Bericht, den Sie zu diesem Empfänger erhalten.",
    .no_content = "(Die ursprüngliche Nachricht war nicht mehr lesbar.)",
    .headers_only = "(Ihre Nachricht war zu groß, um sie ganz zurückzuschicken: Angehängt "
                    "sind nur ihre Kopfzeilen.)",
    .cls =
        {
            [CL_USER] = "Was das bedeutet: Der empfangende Server kennt diese Adresse nicht. "
                        "Bitte prüfen Sie die Adresse auf Tippfehler, sowohl den Teil vor dem "
                        "@ als auch die Domain. Ist sie richtig, hat die Person vielleicht "
                        "gewechselt oder eine neue Adresse: Fragen Sie auf anderem Weg nach "
                        "der aktuellen.",
            [CL_FULL] = "Was das bedeutet: Das Postfach des Empfängers ist voll. Das liegt "
                        "nicht an Ihrer Nachricht; der Empfänger muss Platz schaffen. Sie "
                        "können ihm auf anderem Weg Bescheid geben.",
            [CL_SIZE] = "Was das bedeutet: Ihre Nachricht ist größer, als der empfangende "
                        "Server annimmt. Versenden Sie große Dateien auf anderem Weg (zum "
                        "Beispiel als Download-Link) oder verteilen Sie die Anhänge auf "
                        "mehrere kleinere Nachrichten.",
            [CL_BLOCKED] = "Was das bedeutet: Der empfangende Server hat Mail von der Adresse "
                           "unseres Servers abgelehnt, weil er diese Adresse auf einer "
                           "Sperrliste (Blacklist) oder in eigenen Reputationsdaten gefunden "
                           "hat. Das ist nicht Ihr Fehler und hat nichts mit Ihrer Nachricht "
                           "zu tun. Die Betreiber von %H sind für die Adresse zuständig und "
                           "sorgen dafür, dass sie von der Liste entfernt wird. Bitte senden "
                           "Sie Ihre Nachricht später erneut, zum Beispiel in einer Stunde. "
                           "Wird sie wieder abgelehnt, leiten Sie diese Nachricht an den "
                           "Support Ihres Anbieters weiter (postmaster@%H).",
            [CL_AUTH] = "Was das bedeutet: Der empfangende Server hat die Nachricht "
                        "abgelehnt, weil die Domain Ihrer Absenderadresse den sendenden "
                        "Server nicht berechtigt (Prüfung von SPF, DKIM oder DMARC). Senden "
                        "Sie mit einer Adresse Ihrer eigenen Domain, müssen deren "
                        "DNS-Einträge (SPF) die Server nennen, über die Sie senden: Fragen "
                        "Sie, wer Ihre Domain verwaltet. Leitet der Empfänger seine Mail zu "
                        "einem anderen Anbieter weiter, ist die Prüfung an der Weiterleitung "
                        "gescheitert: Bitten Sie ihn um seine endgültige Adresse.",
            [CL_POLICY] = "Was das bedeutet: Der empfangende Server hat die Nachricht wegen "
                          "eigener Regeln abgelehnt (zum Beispiel ein Spamfilter oder eine "
                          "Beschränkung, wer an diese Adresse schreiben darf). Seine Antwort "
                          "oben nennt meist die Regel. Ist Ihre Nachricht berechtigt, wenden "
                          "Sie sich auf anderem Weg an den Empfänger oder an den Postmaster "
                          "der Empfänger-Domain.",
            [CL_DOMAIN] = "Was das bedeutet: Die Domain dieser Adresse (der Teil nach dem @) "
                          "existiert nicht oder nimmt überhaupt keine Mail an. Bitte prüfen "
                          "Sie die Schreibweise der Domain.",
            [CL_LOOP] = "Was das bedeutet: Die Nachricht ist zwischen Mailservern im Kreis "
                        "gelaufen (zum Beispiel zwei Weiterleitungen, die aufeinander zeigen, "
                        "oder eine Domain, deren Mailserver wieder auf uns verweisen). Das "
                        "kann nur der Administrator der Empfänger-Domain beheben: Leiten Sie "
                        "diese Nachricht bitte an ihn weiter oder an postmaster@%H.",
            [CL_EXPIRED] = "Was das bedeutet: Wir haben %L lang versucht, Ihre Nachricht "
                           "zuzustellen, aber die Gegenseite hat sie nie angenommen; die "
                           "letzte Antwort steht oben. Bitte prüfen Sie die Adresse. Ist sie "
                           "richtig, ist der Mailserver des Empfängers schon lange gestört: "
                           "Erreichen Sie den Empfänger auf anderem Weg und senden Sie die "
                           "Nachricht dann erneut.",
            [CL_UTF8] = "Was das bedeutet: Die Adresse oder die Nachricht braucht "
                        "internationalisierte Mail (SMTPUTF8), die der empfangende Server "
                        "nicht beherrscht. Verwenden Sie, falls vorhanden, eine Adresse des "
                        "Empfängers nur aus ASCII-Zeichen.",
            [CL_POOL_BLOCKED] = "Was das bedeutet: Der empfangende Server sperrt die "
                                "Absendeadressen unseres Mailsystems (sie stehen auf einer "
                                "Sperrliste, die er nutzt). Das ist nicht Ihr Fehler und hat "
                                "nichts mit Ihrer Nachricht zu tun. Die Betreiber von %H wissen "
                                "davon und arbeiten daran, dass die Adressen von der Liste "
                                "genommen werden. Bitte senden Sie Ihre Nachricht später noch "
                                "einmal; wenn sie eilt, erreichen Sie den Empfänger auf einem "
                                "anderen Weg.",
            [CL_PERM_OTHER] = "Was das bedeutet: Der empfangende Server hat die Nachricht "
                              "endgültig abgelehnt; den Grund nennt seine Antwort oben. Ist er "
                              "Ihnen nicht klar, leiten Sie diese Nachricht an den Support "
                              "Ihres Anbieters weiter (postmaster@%H).",
        },
    .blocked_delay = "Was das bedeutet: Der empfangende Server lehnt Mail von der Adresse unseres "
                     "Servers vorerst ab, weil er diese Adresse auf einer Sperrliste gefunden "
                     "hat. Das ist nicht Ihr Fehler und hat nichts mit Ihrer Nachricht zu tun. "
                     "Die Betreiber von %H sind für die Adresse zuständig und sorgen dafür, "
                     "dass sie von der Liste entfernt wird; bis dahin versuchen wir andere "
                     "Wege.",
    .temp = "Das ist ein vorübergehendes Problem beim Empfänger oder auf dem Weg dorthin. "
            "Sie müssen nichts tun: Wir versuchen es weiter bis %s und benachrichtigen Sie, "
            "falls die Nachricht bis dahin nicht zugestellt werden kann.",
    .url = "Die Antwort des empfangenden Servers enthält eine Web-Adresse mit mehr zum "
           "Eintrag auf der Sperrliste.",
};
