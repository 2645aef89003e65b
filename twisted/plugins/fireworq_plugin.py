from twisted.application.service import ServiceMaker

fireworq = ServiceMaker(
    "fireworq", "fireworq.service", "HTTP job queue daemon (Fireworq 1.5 compatible)", "fireworq"
)
