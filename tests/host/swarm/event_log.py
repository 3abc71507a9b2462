import sys

import swarmlog.event_log

sys.modules[__name__] = swarmlog.event_log
