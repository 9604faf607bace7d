/* core.h: the public contract of src/core (buffers, logging, config, addresses,
 * header fields, time, files and base64, worker pool, Maildir layout). Split into one
 * header per concern; nothing in core depends on any other module. */
#ifndef KURIER_CORE_H
#define KURIER_CORE_H

#include "core/compat.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/util.h"
#include "core/work.h"
#include "core/addr.h"
#include "core/esmtp.h"
#include "core/conf.h"
#include "core/header.h"
#include "core/maildir.h"
#include "core/auth_result.h"
#include "core/rdns.h"
#include "core/authres.h"
#include "core/mime.h"
#include "core/batv.h"
#include "core/srs.h"
#include "core/idn.h"
#include "core/aliases.h"

#endif
