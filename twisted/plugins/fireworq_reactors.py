from twisted.application.reactors import Reactor

uvloop = Reactor("uvloop", "fireworq.uvloopreactor",
                 "asyncio reactor on uvloop (the uvloop extra; see docs/performance.md)")
