import { Mqtt } from 'azure-iot-device-mqtt'
import { sasSuite } from './sdk-sas-suite.js'
import { x509Suite } from './x509-suite.js'

// The SAS suite binds 8883 (GatewayHostName=localhost, the SDK's default port); X.509 uses a free port.
sasSuite('Mqtt (TLS, 8883)', Mqtt, 'tls')
x509Suite('Mqtt (TLS)', Mqtt, 'tls')
