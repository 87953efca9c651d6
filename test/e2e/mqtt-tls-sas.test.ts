import { Mqtt } from 'azure-iot-device-mqtt'
import { sasSuite } from './sdk-sas-suite.js'

sasSuite('Mqtt (TLS, 8883)', Mqtt, 'tls')
