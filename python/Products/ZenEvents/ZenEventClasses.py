#encoding: utf-8
"""Zenoss event severities and the commonly imported event class names, so a
zenpython plugin's ``from Products.ZenEvents.ZenEventClasses import ...`` works.

pythond maps a severity to a keyevent's ``df_status`` (docs/MIGRATING.md, "From
Zenoss zenpython"): Clear -> ok, Debug/Info -> info, Warning -> warning,
Error -> error, Critical -> critical.
"""

Clear = 0
Debug = 1
Info = 2
Warning = 3
Error = 4
Critical = 5

severities = {"Clear": Clear, "Debug": Debug, "Info": Info, "Warning": Warning,
              "Error": Error, "Critical": Critical}

Unknown = "/Unknown"
Status_Ping = "/Status/Ping"
Status_Snmp = "/Status/Snmp"
Status_Perf = "/Status/Perf"
Status_Wmi = "/Status/Wmi"
Status_Web = "/Status/Web"
Status_OSProcess = "/Status/OSProcess"
Status_IpService = "/Status/IpService"
Status_Nagios = "/Status/Nagios"
Status_RRD = "/Status/RRD"
Cmd_Fail = "/Cmd/Fail"
Cmd_Ok = "/Cmd/Ok"
Change = "/Change"
Heartbeat = "/Heartbeat"
App_Start = "/App/Start"
App_Stop = "/App/Stop"
Perf_Snmp = "/Perf/Snmp"
