"""`labctl drill`: graded break-and-fix exercises on a real lab.

A drill hides a fault (or two), shows only the symptom a user would meet, hands out hints on
request, and checks a fix on the real lab: the symptom gone, and nothing opened beyond it."""
